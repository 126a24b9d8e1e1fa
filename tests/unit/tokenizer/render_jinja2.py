#!/usr/bin/env python3
"""Renders Jinja templates with jinja2 configured as Hugging Face transformers renders chat templates.

The oracle for wgllm's Jinja interpreter tests. Reads {"cases": [{"template": str, "context": {...}}]}
as JSON on stdin and writes {"results": [...]} to stdout, one result per case:
  {"output": str}                               when rendering succeeds
  {"error": "Type: message", "line": int|null}  when jinja2 refuses the template or fails rendering;
                                                line is the template line jinja2 reports.
The environment mirrors transformers.utils.chat_template_utils._compile_jinja_template:
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker,
loopcontrols]) with its tojson, raise_exception and strftime_now. Exit code 3: jinja2 is missing.
"""

import json
import sys
import traceback
from datetime import datetime

try:
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    sys.stderr.write("python3-jinja2 is not installed: run scripts/install-deps.sh\n")
    sys.exit(3)


class Generation(Extension):
    """transformers' AssistantTracker without the tracking: {% generation %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def template_line(exc):
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.lineno
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == "<template>":
            return frame.lineno
    return None


def render(env, case):
    try:
        return {"output": env.from_string(case["template"]).render(**case["context"])}
    except RecursionError:
        return {"error": "RecursionError: maximum recursion depth exceeded", "line": None}
    except Exception as exc:  # every failure is a result the C++ side must reproduce
        return {"error": "%s: %s" % (type(exc).__name__, exc), "line": template_line(exc)}


def main():
    request = json.load(sys.stdin)
    env = environment()
    results = [render(env, case) for case in request["cases"]]
    json.dump({"results": results}, sys.stdout, ensure_ascii=True)


if __name__ == "__main__":
    main()
