// The browser's gpu::Device (src/gpu/web/web_device.cpp) over navigator.gpu, as an Emscripten --js-library.
// C++ hands out the ids; here they index tables of WebGPU objects. Work is recorded into one command
// encoder (one compute pass while dispatches follow each other) and submitted by wg_submit. Read-backs copy
// into MAP_READ staging buffers; after the submit their mapAsync promises land the bytes, and the host JS
// awaits Module.wgTicket(id) before C++ takes them. The GPUDevice comes from the page (Module.gpu), created
// before the engine starts, with the adapter's limits and features.
mergeInto(LibraryManager.library, {
  $WG: {
    gpu: null,           // {adapter, device, info}
    buffers: [null],     // GPUBuffer by id
    pipelines: [null],   // GPUComputePipeline by id
    groups: [null],      // GPUBindGroup by id
    encoder: null,
    pass: null,
    recorded: [],        // tickets whose copies are in the current encoder
    tickets: null,       // Map: id -> {staging, size, state: 0 in flight | 1 landed | 2 failed, bytes, waiters}
    staging: [],         // idle MAP_READ buffers, reused
    error: '',           // the first error not yet reported to C++
    lost: '',            // sticky once the device is lost

    init: function () {
      if (WG.gpu) return;
      WG.gpu = Module['gpu'];
      WG.tickets = new Map();  // here, not above: the library's object literal is copied as source text
      if (!WG.gpu || !WG.gpu.device) throw new Error('wgllm: Module.gpu.device (a GPUDevice) is missing');
      const device = WG.gpu.device;
      device.addEventListener('uncapturederror', (e) => {
        const oom = e.error instanceof GPUOutOfMemoryError;
        if (!WG.error) WG.error = (oom ? 'out of GPU memory: ' : 'WebGPU error: ') + e.error.message;
      });
      device.lost.then((info) => {
        WG.lost = 'GPU device lost: ' + (info.message || info.reason || 'unknown reason');
        for (const t of WG.tickets.values()) WG.settle(t, 2);
      });
      Module['wgBuffer'] = (id) => WG.buffers[id];
      Module['wgTicket'] = WG.whenLanded;
    },

    endPass: function () {
      if (WG.pass) {
        WG.pass.end();
        WG.pass = null;
      }
    },

    encoder_: function () {
      if (!WG.encoder) WG.encoder = WG.gpu.device.createCommandEncoder();
      return WG.encoder;
    },

    settle: function (t, state) {
      if (t.state !== 0) return;
      t.state = state;
      for (const w of t.waiters) w();
      t.waiters = [];
    },

    // A promise that resolves (with nothing) once ticket `id` has landed or failed.
    whenLanded: function (id) {
      const t = WG.tickets.get(id);
      if (!t || t.state !== 0) return Promise.resolve();
      return new Promise((resolve) => t.waiters.push(resolve));
    },
  },

  wg_limit__deps: ['$WG'],
  wg_limit: function (which) {
    WG.init();
    const l = WG.gpu.device.limits;
    const names = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
                   'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX',
                   'maxComputeWorkgroupsPerDimension', 'maxStorageBuffersPerShaderStage',
                   'minStorageBufferOffsetAlignment', 'minUniformBufferOffsetAlignment'];
    return Number(l[names[which]] || 0);
  },

  wg_has_feature__deps: ['$WG'],
  wg_has_feature: function (name) {
    WG.init();
    const n = UTF8ToString(name);
    if (WG.gpu.device.features.has(n)) return 1;
    const lang = navigator.gpu && navigator.gpu.wgslLanguageFeatures;
    return lang && lang.has(n) ? 1 : 0;
  },

  wg_info__deps: ['$WG'],
  wg_info: function (field, out, capacity) {
    WG.init();
    const info = WG.gpu.info || {};
    const s = String([info.vendor, info.architecture, info.device, info.description][field] || '');
    return stringToUTF8(s, out, capacity);
  },

  wg_subgroup_size__deps: ['$WG'],
  wg_subgroup_size: function (max) {
    WG.init();
    const info = WG.gpu.info || {};
    return Number((max ? info.subgroupMaxSize : info.subgroupMinSize) || 0);
  },

  wg_buffer__deps: ['$WG'],
  wg_buffer: function (id, size, usage, label) {
    let u = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    if (usage & 1) u |= GPUBufferUsage.STORAGE;
    if (usage & 2) u |= GPUBufferUsage.UNIFORM;
    WG.buffers[id] = WG.gpu.device.createBuffer({label: UTF8ToString(label), size: size, usage: u});
  },

  wg_write__deps: ['$WG'],
  wg_write: function (id, offset, data, size) {
    WG.gpu.device.queue.writeBuffer(WG.buffers[id], offset, HEAPU8, data, size);
  },

  wg_kernel__deps: ['$WG'],
  wg_kernel: function (id, label, code) {
    const name = UTF8ToString(label);
    const device = WG.gpu.device;
    const module = device.createShaderModule({label: name, code: UTF8ToString(code)});
    // Compilation messages arrive later; they name the kernel and its line, as the native build does.
    module.getCompilationInfo().then((info) => {
      for (const m of info.messages) {
        if (m.type === 'error' && !WG.error)
          WG.error = 'WGSL kernel \'' + name + '\': ' + name + '.wgsl:' + m.lineNum + ':' + m.linePos + ': ' + m.message;
      }
    });
    WG.pipelines[id] = device.createComputePipeline({label: name, layout: 'auto', compute: {module: module, entryPoint: 'main'}});
  },

  wg_bind__deps: ['$WG'],
  wg_bind: function (id, kernel, count, entries) {
    const e = [];
    for (let i = 0; i < count; ++i) {
      const at = (entries >> 3) + 3 * i;
      const resource = {buffer: WG.buffers[HEAPF64[at]], offset: HEAPF64[at + 1]};
      if (HEAPF64[at + 2]) resource.size = HEAPF64[at + 2];
      e.push({binding: i, resource: resource});
    }
    WG.groups[id] = WG.gpu.device.createBindGroup({layout: WG.pipelines[kernel].getBindGroupLayout(0), entries: e});
  },

  wg_dispatch__deps: ['$WG'],
  wg_dispatch: function (kernel, group, x, y, z) {
    if (!WG.pass) WG.pass = WG.encoder_().beginComputePass();
    WG.pass.setPipeline(WG.pipelines[kernel]);
    WG.pass.setBindGroup(0, WG.groups[group]);
    WG.pass.dispatchWorkgroups(x, y, z);
  },

  wg_copy__deps: ['$WG'],
  wg_copy: function (src, srcOffset, dst, dstOffset, size) {
    WG.endPass();
    WG.encoder_().copyBufferToBuffer(WG.buffers[src], srcOffset, WG.buffers[dst], dstOffset, size);
  },

  wg_read__deps: ['$WG'],
  wg_read: function (ticket, src, offset, size) {
    WG.endPass();
    const padded = Math.max(4, Math.ceil(size / 4) * 4);
    let k = WG.staging.findIndex((b) => b.size >= padded);
    const staging = k >= 0 ? WG.staging.splice(k, 1)[0]
        : WG.gpu.device.createBuffer({label: 'read-back', size: padded, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    WG.encoder_().copyBufferToBuffer(WG.buffers[src], offset, staging, 0, padded);
    WG.tickets.set(ticket, {staging: staging, size: size, state: 0, bytes: null, waiters: []});
    WG.recorded.push(ticket);
  },

  wg_submit__deps: ['$WG'],
  wg_submit: function () {
    WG.endPass();
    if (WG.encoder) {
      WG.gpu.device.queue.submit([WG.encoder.finish()]);
      WG.encoder = null;
    }
    for (const id of WG.recorded) {
      const t = WG.tickets.get(id);
      t.staging.mapAsync(GPUMapMode.READ, 0, t.staging.size).then(() => {
        t.bytes = new Uint8Array(t.staging.getMappedRange(0, Math.ceil(t.size / 4) * 4).slice(0, t.size));
        t.staging.unmap();
        WG.staging.push(t.staging);
        WG.settle(t, 1);
      }, (e) => {
        if (!WG.error) WG.error = 'read-back failed: ' + e.message;
        WG.settle(t, 2);
      });
    }
    WG.recorded = [];
  },

  wg_ticket_state__deps: ['$WG'],
  wg_ticket_state: function (id) {
    const t = WG.tickets.get(id);
    return t ? t.state : 2;
  },

  wg_ticket_take__deps: ['$WG'],
  wg_ticket_take: function (id, out, capacity) {
    const t = WG.tickets.get(id);
    WG.tickets.delete(id);
    if (!t || t.state !== 1) return 0;
    const n = Math.min(capacity, t.bytes.length);
    HEAPU8.set(t.bytes.subarray(0, n), out);
    return n;
  },

  wg_error__deps: ['$WG'],
  wg_error: function (out, capacity) {
    const e = WG.lost || WG.error;
    if (!e) return 0;
    WG.error = '';
    return stringToUTF8(e, out, capacity);
  },

  wg_lose__deps: ['$WG'],
  wg_lose: function () {
    WG.lost = 'GPU device lost: the device was destroyed';
    WG.gpu.device.destroy();
  },
});
