// `wgllm chat`: a multi-turn conversation through the model's chat template. On a terminal it reads lines
// with libedit (editing, history) and prints a prompt; from a pipe it reads plain lines and stdout carries
// only the replies, each ending in one '\n'. Messages about the chat itself go to stderr. Ctrl-C stops a
// reply; at the prompt a second Ctrl-C in a row (or Ctrl-D, or /quit) ends the chat.
#include <histedit.h>
#include <langinfo.h>
#include <unistd.h>

#include <cerrno>
#include <clocale>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "core/utf8.hpp"
#include "runtime/forward.hpp"
#include "tokenizer/conversation.hpp"

namespace wgllm::cli {

namespace {

// SIGINTs since the driver last cleared it: checked between tokens and after an interrupted read.
volatile std::sig_atomic_t g_interrupts = 0;

void on_sigint(int) {
  g_interrupts = g_interrupts + 1;
}

// Catches SIGINT for the chat's lifetime, without SA_RESTART so that a read at the prompt returns.
class SigintHandler {
 public:
  SigintHandler() {
    struct sigaction sa = {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &previous_);
  }
  ~SigintHandler() { sigaction(SIGINT, &previous_, nullptr); }
  SigintHandler(const SigintHandler&) = delete;
  SigintHandler& operator=(const SigintHandler&) = delete;

 private:
  struct sigaction previous_ = {};
};

struct ChatFlags {
  std::string model;
  std::string system;
  std::string chat_template_file;
  int64_t n_predict = -1;
  int64_t seed = -1;
  runtime::SamplingParams sampling;
  uint32_t ctx_size = 0;
  bool verbose_prompt = false;
  KernelFlags kernels;
  gpu::DeviceOptions device;
};

// The user's lines: libedit on a terminal, plain lines from anything else.
class LineReader {
 public:
  LineReader() : terminal_(isatty(STDIN_FILENO) != 0) {
    if (!terminal_) return;
    // libedit reads characters with mbrtowc: UTF-8 input needs a UTF-8 LC_CTYPE.
    if (!std::setlocale(LC_CTYPE, "") || std::string_view(nl_langinfo(CODESET)) != "UTF-8")
      std::setlocale(LC_CTYPE, "C.UTF-8");
    el_ = el_init("wgllm", stdin, stdout, stderr);
    history_ = history_init();
    HistEvent ev;
    history(history_, &ev, H_SETSIZE, 1000);
    el_set(el_, EL_HIST, history, history_);
    el_set(el_, EL_EDITOR, "emacs");
    el_set(
        el_, EL_PROMPT, +[](EditLine*) -> char* { return const_cast<char*>("> "); });
    el_source(el_, nullptr);  // the user's ~/.editrc
  }
  ~LineReader() {
    if (el_) el_end(el_);
    if (history_) history_end(history_);
  }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  bool terminal() const { return terminal_; }

  // The next line without its '\n'; nullopt at the end of the input or when the user quits.
  std::optional<std::string> read() {
    if (!terminal_) {
      std::string line;
      if (!std::getline(std::cin, line)) return std::nullopt;
      return line;
    }
    bool warned = false;
    for (;;) {
      g_interrupts = 0;
      int count = 0;
      const char* s = el_gets(el_, &count);
      if (s && count > 0) {
        std::string line(s, static_cast<size_t>(count));
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
        if (line.find_first_not_of(" \t") != std::string::npos) {
          HistEvent ev;
          history(history_, &ev, H_ENTER, line.c_str());
        }
        return line;
      }
      if (count < 0 && errno == EINTR && g_interrupts > 0) {
        std::fputc('\n', stdout);  // end the interrupted prompt's line
        std::fflush(stdout);
        if (warned) return std::nullopt;
        std::fprintf(stderr, "(Ctrl-C again, Ctrl-D or /quit to leave)\n");
        warned = true;
        continue;
      }
      std::fputc('\n', stdout);  // Ctrl-D: end the prompt's line
      return std::nullopt;
    }
  }

 private:
  bool terminal_;
  EditLine* el_ = nullptr;
  History* history_ = nullptr;
};

const char* kHelp =
    "Commands:\n"
    "  /reset        start a new conversation (the system message stays)\n"
    "  /system TEXT  set the system message (empty: none); the conversation goes on\n"
    "  /save FILE    write the conversation as a JSON array of {role, content} messages\n"
    "  /help         this text\n"
    "  /quit         leave (also Ctrl-D, or Ctrl-C twice at the prompt)\n"
    "A line ending in '\\' continues on the next line. Ctrl-C stops a reply.\n";

class Chat {
 public:
  explicit Chat(const ChatFlags& f)
      : flags_(f),
        model_path_(f.model.empty() ? default_model_path() : f.model),
        file_(gguf::GgufFile::open(model_path_)),
        tok_(tokenizer::Tokenizer::from_gguf(*file_)),
        conversation_(*tok_, model_chat_template(*file_, f.chat_template_file)),
        device_(gpu::open_device(f.device)) {
    sampling_ = f.sampling;
    sampling_.seed = f.seed >= 0 ? static_cast<uint32_t>(f.seed) : std::random_device{}();
    if (f.seed < 0) std::fprintf(stderr, "seed: %u\n", sampling_.seed);
    runtime::ForwardOptions fo = forward_options(*device_, f.ctx_size, f.kernels);
    forward_ = std::make_unique<runtime::Forward>(*device_, *file_, fo);
    session_ = std::make_unique<runtime::Session>(*forward_, sampling_);
    conversation_.set_system(utf8::sanitize(f.system));
    std::fprintf(stderr, "loaded %s on %s (%s): %u layers, vocab %u, context %u, chat template %s\n",
                 model_path_.c_str(), device_->info().device.c_str(), device_->info().backend.c_str(),
                 forward_->config().n_layers, forward_->config().n_vocab, forward_->n_ctx(),
                 conversation_.chat_template().name().c_str());
  }

  int run() {
    SigintHandler sigint;
    LineReader reader;
    if (reader.terminal())
      std::fprintf(stderr, "/help lists the commands; Ctrl-C stops a reply, Ctrl-D leaves.\n");
    std::string pending;  // lines continued with a trailing '\'
    while (std::optional<std::string> line = reader.read()) {
      if (!line->empty() && line->back() == '\\') {
        line->pop_back();
        pending += *line + "\n";
        continue;
      }
      std::string text = pending + *line;
      pending.clear();
      if (text.find_first_not_of(" \t\n") == std::string::npos) continue;
      if (text.front() == '/') {
        if (!command(text)) break;
        continue;
      }
      reply(utf8::sanitize(text));
    }
    return 0;
  }

 private:
  // Returns false when the chat is to end.
  bool command(const std::string& line) {
    const size_t space = line.find(' ');
    const std::string name = line.substr(0, space);
    std::string arg = space == std::string::npos ? "" : line.substr(space + 1);
    if (name == "/quit" || name == "/exit") return false;
    if (name == "/help") {
      std::fputs(kHelp, stderr);
    } else if (name == "/reset") {
      conversation_.reset();
      std::fprintf(stderr, "(new conversation)\n");
    } else if (name == "/system") {
      conversation_.set_system(utf8::sanitize(arg));
      std::fprintf(stderr, arg.empty() ? "(no system message)\n" : "(system message set)\n");
    } else if (name == "/save") {
      if (arg.empty()) {
        std::fprintf(stderr, "/save needs a file name\n");
        return true;
      }
      nlohmann::ordered_json messages = nlohmann::ordered_json::array();
      for (const tokenizer::ChatMessage& m : conversation_.messages())
        messages.push_back({{"role", m.role}, {"content", m.content}});
      std::ofstream out(arg, std::ios::binary | std::ios::trunc);
      out << messages.dump(2) << "\n";
      if (!out.flush()) {
        std::fprintf(stderr, "/save: cannot write %s\n", arg.c_str());
        return true;
      }
      std::fprintf(stderr, "(saved %zu messages to %s)\n", conversation_.messages().size(), arg.c_str());
    } else {
      std::fprintf(stderr, "unknown command %s (/help lists them)\n", name.c_str());
    }
    return true;
  }

  void reply(std::string text) {
    g_interrupts = 0;
    conversation_.add({"user", std::move(text)});
    tokenizer::Conversation::Prompt prompt;
    try {
      prompt = conversation_.next_prompt();
    } catch (const Error& e) {
      std::fprintf(stderr, "wgllm: %s\n", e.what());
      conversation_.pop();
      return;
    }
    const uint32_t n_ctx = forward_->n_ctx();
    if (prompt.reused + prompt.tokens.size() >= n_ctx) {
      std::fprintf(
          stderr,
          "wgllm: the conversation (%zu tokens with this message) does not fit the context of %u tokens; "
          "/reset starts a new one\n",
          prompt.reused + prompt.tokens.size(), n_ctx);
      conversation_.pop();
      return;
    }
    // A prompt that does not extend what the model holds is fed from the start in a fresh session (the old
    // KV cache is simply overwritten).
    if (prompt.reused == 0 && session_->position() > 0) {
      ++sessions_;
      runtime::SamplingParams s = sampling_;
      s.seed = sampling_.seed + sessions_;
      session_ = std::make_unique<runtime::Session>(*forward_, s);
    }
    const gpu::ReadTicket first = session_->prefill(prompt.tokens);
    conversation_.fed(prompt);
    if (flags_.verbose_prompt) print_prompt_tokens(conversation_.tokens(), prompt.reused);

    tokenizer::StreamDecoder decoder(*tok_, /*strip_leading_space=*/true);
    GenerateOptions options;
    options.max_new = flags_.n_predict < 0 ? UINT64_MAX : static_cast<uint64_t>(flags_.n_predict);
    options.interrupt = &g_interrupts;
    Generated g = generate(*session_, *tok_, first, options, [&](int32_t id) {
      const std::string piece = decoder.push(id);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    });
    const std::string tail = decoder.flush();
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    for (int32_t id : g.fed) conversation_.fed(id);
    conversation_.add_reply(g.ids);
    if (g.stop == StopReason::Interrupted) std::fprintf(stderr, "(stopped)\n");
    if (g.stop == StopReason::ContextFull)
      std::fprintf(stderr, "wgllm: the context of %u tokens is full; /reset starts a new conversation\n",
                   n_ctx);
  }

  ChatFlags flags_;
  std::string model_path_;
  std::unique_ptr<gguf::GgufFile> file_;
  std::unique_ptr<tokenizer::Tokenizer> tok_;
  tokenizer::Conversation conversation_;
  std::unique_ptr<gpu::Device> device_;
  std::unique_ptr<runtime::Forward> forward_;
  runtime::SamplingParams sampling_;
  std::unique_ptr<runtime::Session> session_;
  uint32_t sessions_ = 0;  // fresh sessions started after the first, to vary their sampling seed
};

}  // namespace

tokenizer::ChatTemplate model_chat_template(const gguf::GgufFile& file, const std::string& template_file) {
  if (!template_file.empty()) return tokenizer::ChatTemplate(read_text_file(template_file), template_file);
  if (std::optional<std::string> source = tokenizer::chat_template_from_gguf(file))
    return tokenizer::ChatTemplate(std::move(*source), "tokenizer.chat_template");
  std::fprintf(stderr, "warning: %s has no chat template (tokenizer.chat_template): using ChatML\n",
               file.path().c_str());
  return tokenizer::ChatTemplate::chatml();
}

Action add_chat(CLI::App& app) {
  auto f = std::make_shared<ChatFlags>();
  app.add_option("-m,--model", f->model, "GGUF model file (default: the built-in stories260K)")
      ->check(CLI::ExistingFile);
  app.add_option("--system", f->system, "the system message");
  app.add_option("--chat-template-file", f->chat_template_file,
                 "use this Jinja chat template instead of the model's")
      ->check(CLI::ExistingFile);
  app.add_option("-n,--n-predict", f->n_predict,
                 "at most N tokens per reply (-1: until end of turn or context)");
  add_sampling_flags(app, f->sampling, f->seed);
  app.add_option("-c,--ctx-size", f->ctx_size, "context size in tokens (default: the model's, at most 4096)");
  app.add_flag("--verbose-prompt", f->verbose_prompt,
               "print the token ids the model holds after each turn's prompt on stderr");
  add_device_flags(app, f->device, f->kernels);
  return [f] {
    if (f->n_predict == 0) fail_input("-n 0 leaves no room for a reply (-1: no limit)");
    Chat chat(*f);
    return chat.run();
  };
}

}  // namespace wgllm::cli
