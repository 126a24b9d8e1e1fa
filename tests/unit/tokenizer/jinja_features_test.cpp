// The interpreter's features, each on small hand-written templates, against jinja2 configured as
// transformers renders chat templates (jinja_oracle.hpp).
#include <gtest/gtest.h>

#include "unit/tokenizer/jinja_oracle.hpp"

namespace wgllm::test {
namespace {

Json sample_context() {
  return Json::parse(R"({
    "messages": [
      {"role": "system", "content": "  Be brief.  "},
      {"role": "user", "content": "Hello, \"world\" {{ not a tag }} é ☃ 🎉"},
      {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHi!"},
      {"role": "user", "content": "Again?\n"}
    ],
    "users": [{"name": "ann", "age": 31, "tags": ["a", "b"]}, {"name": "Bob", "age": 7}, {"name": "cy", "age": null}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather 🌧",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    "n": 7, "f": 2.5, "neg": -3, "big": 4611686018427387904, "t": true, "none": null,
    "s": "Hello World", "empty": "", "list": [3, 1, 2], "words": ["b", "A", "a", "c"],
    "d": {"b": 1, "a": 2, "items": "shadowed"}, "nested": {"x": {"y": [10, 20, {"z": "deep"}]}}
  })");
}

void check(const std::vector<std::string>& sources, bool check_lines = true) {
  std::vector<JinjaCase> cases;
  for (const std::string& s : sources) cases.push_back({s, sample_context()});
  expect_same_as_jinja2(cases, check_lines);
}

TEST(JinjaFeatures, OutputAndLiterals) {
  check({
      "plain text only",
      "{{ 'single' }} {{ \"double\" }} {{ 'adjacent' \"strings\" }}",
      "{{ 'esc\\n\\t\\\\ \\'q\\' \\x41 \\u00e9 \\U0001F600 \\101 \\z' }}",
      "{{ 42 }} {{ -7 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1_000 }} {{ 3.25 }} {{ 1e3 }} {{ 1.5E-7 }} {{ "
      "1e16 }}",
      "{{ 0.1 + 0.2 }} {{ 1/3 }} {{ 2.0 }} {{ 1e15 }} {{ 123456789.125 }} {{ f * 1e22 }} {{ 1e-5 }}",
      "{{ true }} {{ false }} {{ none }} {{ True }} {{ None }} {{ undefined_name }}",
      "{{ [1, 'a', none, true, 1.5, [2], {'k': 'v'}] }} {{ (1, 2) }} {{ (1,) }} {{ () }} {{ {} }}",
      "{{ \"it's\" }} {{ ['it\\'s', 'a\"b', 'both\\'\"', 'nl\\n', 'tab\\t', '\\x01'] }}",
      "{{ {'a': 1, 2: 'b', none: 3, true: 4} }} {{ {1: 'x', 1.0: 'y', true: 'z'} }}",
      "{{ messages[1].content }}",
      "{{ n }}{{ f }}{{ neg }}{{ big }}{{ t }}{{ none }}",
      "a{# comment #}b{# multi\nline #}c",
      "{% raw %}{{ not evaluated }} {% if %}{% endraw %}",
      "{{ 'a' ~ 1 ~ none ~ true ~ undefined_name ~ [1] }}",
      "{{ 'x' * 3 }} {{ 2 * 'ab' }} {{ [1] * 3 }} {{ 'x' * -1 }} {{ 'a' + 'b' }} {{ [1] + [2, 3] }} {{ (1,) "
      "+ (2,) }}",
  });
}

TEST(JinjaFeatures, Arithmetic) {
  check({
      "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }}",
      "{{ 7 / 2 }} {{ 6 / 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2 ** 0.5 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }}",
      "{{ 7.5 // 2 }} {{ -7.5 // 2 }} {{ 7.5 % 2 }} {{ -7.5 % 2 }} {{ 1 + 2.5 }} {{ true + 1 }} {{ f * 2 }}",
      "{{ n - 10 }} {{ -n }} {{ +n }} {{ - -n }} {{ 1 - -1 }} {{ n * f }}",
      "{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' == 'a' }} {{ [1, 2] == [1, 2] }} {{ [1] == (1,) }} {{ {'a': 1} "
      "== {'a': 1} }}",
      "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 <= 1 }} {{ 'a' < 'b' }} {{ 'B' < 'a' }} {{ [1, 2] < [1, 3] }} {{ "
      "2 >= 2.5 }}",
      "{{ 'a' in 'cat' }} {{ 'z' not in 'cat' }} {{ 1 in [1, 2] }} {{ 3 not in [1, 2] }} {{ 'a' in d }} {{ "
      "'q' in d }}",
      "{{ not true }} {{ not 0 }} {{ not '' }} {{ not [] }} {{ not none }} {{ not undefined_name }}",
      "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' and 'z' }} {{ none or none }} {{ [] or {} }} {{ 1 and 0 or 5 }}",
      "{{ 'yes' if t else 'no' }} {{ 'yes' if none else 'no' }} {{ 'x' if false }}|{{ 1 if 0 else 2 if 0 "
      "else 3 }}",
      "{{ 1 + }}",
      "{{ 'a' + 1 }}",
      "{{ 1 / 0 }}",
      "{{ 1 // 0 }}",
      "{{ 1 < 'a' }}",
      "{{ undefined_name + 1 }}",
      "{{ -'a' }}",
  });
}

TEST(JinjaFeatures, SubscriptsAndAttributes) {
  check({
      "{{ list[0] }} {{ list[-1] }} {{ list[5] }}|{{ s[0] }} {{ s[-1] }} {{ messages[1]['role'] }} {{ "
      "messages[1].role }}",
      "{{ s[::-1] }} {{ s[1:3] }} {{ s[:2] }} {{ s[6:] }} {{ s[::2] }} {{ s[-3:] }} {{ s[10:2:-3] }} {{ "
      "s[100:] }}",
      "{{ list[::-1] }} {{ list[1:] }} {{ list[:-1] }} {{ (1, 2, 3)[1:] }} {{ messages[-1:] | length }}",
      "{{ 'é☃🎉'[1] }} {{ 'é☃🎉'[::-1] }} {{ 'é☃🎉'[1:] }} {{ 'é☃🎉' | length }}",
      "{{ nested.x.y[2].z }} {{ nested['x']['y'][0] }} {{ nested.x.y.1 }} {{ users.0.name }}",
      "{{ d.items is callable }}|{{ d['items'] }}|{{ d.a }}|{{ d.zz }}|{{ none.x }}|{{ n.x }}|{{ s.foo }}",
      "{{ nested.x.q }}|{{ nested.x.q is defined }}|{{ messages[9] is defined }}",
      "{{ nested.x.q.r }}",
      "{{ messages[9]['role'] }}",
      "{{ undefined_name.attr }}",
      "{{ list.append(4) }}",
      "{{ d.update({}) }}",
      "{{ s[1:2:0] }}",
  });
}

TEST(JinjaFeatures, Statements) {
  check({
      "{% if n > 5 %}big{% elif n > 2 %}mid{% else %}small{% endif %}",
      "{% if none %}a{% elif empty %}b{% else %}c{% endif %}{% if t %}d{% endif %}",
      "{% for m in messages %}{{ loop.index }}:{{ m.role }};{% endfor %}",
      "{% for m in messages %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ "
      "loop.last }}"
      "{{ loop.length }}{{ loop.depth }}|{% endfor %}",
      "{% for x in list %}{{ loop.previtem }}>{{ x }}>{{ loop.nextitem }};{% endfor %}",
      "{% for x in list %}{{ loop.cycle('odd', 'even') }}{% endfor %}",
      "{% for x in [] %}never{% else %}empty{% endfor %}{% for x in undefined_name %}no{% else %}undef{% "
      "endfor %}",
      "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}",
      "{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}{% for c in 'hé' %}[{{ c }}]{% endfor %}",
      "{% for x in range(10) if x is odd %}{{ x }}{{ loop.index }}/{{ loop.length }} {% endfor %}",
      "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif "
      "%}{{ x }}"
      "{% endfor %}",
      "{% for x in range(3) %}{% for y in range(3) %}{% if y > x %}{% break %}{% endif %}{{ x }}{{ y }} {% "
      "endfor %}"
      "{% endfor %}",
      "{% set x = 1 %}{% for i in range(3) %}{{ x }}{% set x = x + 10 %}{{ x }},{% endfor %}{{ x }}",
      "{% for i in range(2) %}{% if i == 0 %}{% set y = 5 %}{% endif %}[{{ y }}]{% endfor %}[{{ y }}]",
      "{% if true %}{% set z = 3 %}{% endif %}{{ z }}",
      "{% set a, b = [1, 2] %}{{ a }}{{ b }}{% set c, = 'x' %}{{ c }}{% set (e, g) = (3, 4) %}{{ e }}{{ g }}",
      "{% set ns = namespace(count=0, found=false) %}{% for m in messages %}{% if m.role == 'user' %}"
      "{% set ns.count = ns.count + 1 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }}{{ "
      "ns.found }}",
      "{% set ns = namespace() %}{% set ns.x = 'y' %}{{ ns.x }}{{ ns }}{% set ns2 = namespace({'a': 1}, b=2) "
      "%}{{ ns2.a }}{{ ns2.b }}",
      "{% set block %}  text {{ n }}\n{% endset %}[{{ block }}]{% set up | upper | trim %} shout {% endset "
      "%}[{{ up }}]",
      "{% filter upper %}loud {{ s }}{% endfilter %}",
      "{% with a = 1, b = n %}{{ a }}{{ b }}{% endwith %}[{{ a }}]",
      "{% generation %}{{ 'generated' }}{% endgeneration %}",
      "{% set x = 1 %}{% set x %}block{% endset %}{{ x }}",
      "{% set ns = namespace(v=1) %}{% set ns.v = 2 %}{% set other = 5 %}{% set other.v = 3 %}",
      "{% set a, b = [1, 2, 3] %}",
      "{% for x in 5 %}{% endfor %}",
  });
}

TEST(JinjaFeatures, Macros) {
  check({
      "{% macro greet(name, greeting='Hello', punct='!') %}{{ greeting }}, {{ name }}{{ punct }}{% endmacro "
      "%}"
      "{{ greet('Ann') }} {{ greet('Bob', 'Hi') }} {{ greet('Cy', punct='?') }} {{ greet(greeting='Yo', "
      "name='Di') }}",
      "{% macro m(a, b=a * 2) %}{{ a }}-{{ b }}{% endmacro %}{{ m(3) }}",
      "{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m() }}{{ m }}",
      "{% macro v() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ v(1, 2, k=3) }}",
      "{% macro g() %}{{ gv }}{% endmacro %}{% set gv = 'late' %}{{ g() }}",
      "{% macro outer(x) %}{% macro inner(y) %}<{{ y }}>{% endmacro %}{{ inner(x) }}{{ inner(x ~ x) }}{% "
      "endmacro %}"
      "{{ outer('z') }}",
      "{% macro fact(k) %}{% if k <= 1 %}1{% else %}{{ k * fact(k - 1) | int }}{% endif %}{% endmacro %}{{ "
      "fact(10) }}",
      "{% macro render_list(items) %}<ul>{% for i in items %}<li>{{ caller(i) }}</li>{% endfor %}</ul>{% "
      "endmacro %}"
      "{% call(item) render_list(users) %}{{ item.name | upper }}{% endcall %}",
      "{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}inside {{ n }}{% endcall %}",
      "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}",
      "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, b=2) }}",
      "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, a=2) }}",
      "{% macro m() %}x{% endmacro %}{{ m() ~ m() }}{{ m() | length }}",
  });
}

TEST(JinjaFeatures, Filters) {
  check({
      "[{{ '  x  ' | trim }}] [{{ 'xxhixx' | trim('x') }}] [{{ messages[0].content | trim }}] [{{ none | "
      "trim }}]",
      "{{ s | length }} {{ list | length }} {{ d | length }} {{ undefined_name | length }} {{ 'é🎉' | count "
      "}}",
      "{{ s | upper }} {{ s | lower }} {{ 'hello-world foo(bar) x_y' | title }} {{ 'hELLO wORLD' | "
      "capitalize }}",
      "{{ s | replace('l', 'L') }} {{ s | replace('l', '', 1) }} {{ 'ab' | replace('', '-') }} {{ 12 | "
      "replace('1', 'x') }}",
      "{{ list | join }} {{ list | join(', ') }} {{ users | join('|', attribute='name') }} {{ 'abc' | "
      "join('.') }}",
      "{{ list | first }} {{ list | last }} {{ s | first }} {{ s | last }} {{ [] | first }}|{{ d | first }}",
      "{{ list | list }} {{ s | list }} {{ d | list }} {{ undefined_name | list }} {{ (1, 2) | list }}",
      "{{ list | sort }} {{ words | sort }} {{ words | sort(case_sensitive=true) }} {{ words | "
      "sort(reverse=true) }}",
      "{{ users | sort(attribute='name') | map(attribute='name') | list }} {{ users | sort(attribute='age') "
      "| length }}",
      "{{ users | map(attribute='name') | list }} {{ users | map(attribute='age', default=0) | list }}",
      "{{ users | map(attribute='tags.0') | list }} {{ list | map('string') | join('+') }} {{ words | "
      "map('upper') | list }}",
      "{{ users | selectattr('age') | map(attribute='name') | list }} {{ users | rejectattr('age') | list }}",
      "{{ users | selectattr('name', 'equalto', 'Bob') | list }} {{ users | selectattr('age', 'gt', 10) | "
      "list }}",
      "{{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ messages | "
      "rejectattr('role', '==', 'user') "
      "| map(attribute='role') | join(',') }}",
      "{{ range(10) | select('odd') | list }} {{ range(10) | reject('even') | list }} {{ [0, 1, '', 'a'] | "
      "select | list }}",
      "{{ range(10) | select('divisibleby', 3) | list }} {{ words | select('in', ['a', 'c']) | list }}",
      "{{ d | items | list }} {{ d | dictsort }} {{ d | dictsort(by='value', reverse=true) }} {{ "
      "undefined_name | items | list }}",
      "{{ 5 | string }}{{ none | string }}{{ [1] | string }} {{ '42' | int + 1 }} {{ ' 42 ' | int }} {{ "
      "'4.7' | int }} "
      "{{ 'x' | int }} {{ 'x' | int(-1) }} {{ 4.9 | int }} {{ '0x1A' | int(base=16) }} {{ none | int }}",
      "{{ '2.5' | float }} {{ 3 | float }} {{ 'x' | float }} {{ ' 1e3 ' | float }} {{ 'nan' | float }} {{ "
      "'1_0.5' | float }}",
      "{{ undefined_name | default('dflt') }} {{ none | default('dflt') }} {{ '' | default('dflt') }} "
      "{{ '' | default('dflt', true) }} {{ undefined_name | d('short') }} {{ 0 | d(5, boolean=true) }}",
      "{{ '<a href=\"x\">&\\'</a>' | escape }} {{ '<b>' | e }} {{ '<i>' | safe }} {{ 3 | safe }}",
      "{{ -3 | abs }} {{ -2.5 | abs }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }} {{ 7 | "
      "round }} "
      "{{ 3.14159 | round(3, 'floor') }} {{ 3.1 | round(0, 'ceil') }}",
      "{{ list | sum }} {{ users | sum(attribute='age', start=1) if false else 0 }} {{ [[1], [2]] | "
      "sum(start=[]) }}",
      "{{ list | min }} {{ list | max }} {{ words | min }} {{ words | max(case_sensitive=true) }} {{ users | "
      "max(attribute='name') }}",
      "{{ [1, 2, 1, 3, 2] | unique | list }} {{ words | unique | list }} {{ words | "
      "unique(case_sensitive=true) | list }}",
      "{{ s | reverse }} {{ list | reverse | list }}",
      "{{ 'line1\\nline2\\n\\nline4' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | "
      "indent('--', blank=true) }}",
      "{{ tools | tojson }}",
      "{{ tools[0] | tojson(indent=4) }}",
      "{{ users | tojson(indent=2, sort_keys=true) }} {{ d | tojson(separators=(',', ':')) }}",
      "{{ 'é\"\\\\\\n\\u0001\\u007f' | tojson }} {{ 'é🎉' | tojson(ensure_ascii=true) }} {{ [] | "
      "tojson(indent=2) }}",
      "{{ [1.0, 1e16, 0.1, -0.0, true, none, {}] | tojson }} {{ {1: 'a', none: 'b', true: 'c', 2.5: 'd'} | "
      "tojson }}",
      "{{ undefined_name | tojson }}",
      "{{ list | tojson(indent='\\t') }} {{ nested | tojson(indent=0) }}",
      "{{ s | nosuchfilter }}",
      "{% if false %}{{ s | nosuchfilter }}{% endif %}ok {{ 1 if true else s | nosuchfilter }}",
      "{% if true %}{{ s | nosuchfilter }}{% endif %}",
      "{% if false %}{% for a in b %}{{ s | nosuchfilter }}{% endfor %}{% endif %}",
      "{% if false %}{% set x %}{{ s | nosuchfilter }}{% endset %}{% set y = s | nosuchfilter %}{% endif %}",
      "{% if s | nosuchfilter %}{% endif %}",
      "{{ 5 | length }}",
      "{{ 5 | join }}",
      "{{ [3, 'a'] | sort }}",
      "{{ 5 | items | list }}",
      // A filter or test named to map/select/... is looked up only for an item, and a false value has none.
      "{{ undefined_name | selectattr('role', 'nosuchtest', 'user') | list }} {{ none | select('nosuchtest') "
      "| list }} {{ [] | reject('nosuchtest') | list }} {{ '' | map('nosuchfilter') | list }} {{ none | "
      "selectattr | list }}",
      "{{ [1] | select('nosuchtest') | list }}",
      "{{ users | rejectattr('age', 'nosuchtest') | list }}",
      "{{ words | map('nosuchfilter') | list }}",
  });
}

TEST(JinjaFeatures, Tests) {
  check({
      "{{ n is defined }} {{ undefined_name is defined }} {{ undefined_name is undefined }} {{ none is none "
      "}} "
      "{{ 0 is none }} {{ n is not none }}",
      "{{ s is string }} {{ n is string }} {{ n is number }} {{ f is number }} {{ t is number }} {{ s is "
      "number }}",
      "{{ n is integer }} {{ t is integer }} {{ f is float }} {{ t is boolean }} {{ t is true }} {{ false is "
      "false }} "
      "{{ 1 is true }}",
      "{{ d is mapping }} {{ list is mapping }} {{ list is iterable }} {{ s is iterable }} {{ d is iterable "
      "}} "
      "{{ n is iterable }} {{ none is iterable }} {{ undefined_name is iterable }}",
      "{{ list is sequence }} {{ s is sequence }} {{ d is sequence }} {{ n is sequence }} {{ none is "
      "sequence }}",
      "{{ 'a' is in 'cat' }} {{ 2 is in list }} {{ n is eq 7 }} {{ n is equalto 7 }} {{ n is ne 7 }} {{ n is "
      "lt 10 }} "
      "{{ n is le 7 }} {{ n is gt 7 }} {{ n is ge 7 }} {{ n is greaterthan 1 }} {{ n is lessthan 1 }}",
      "{{ n is odd }} {{ n is even }} {{ 6 is divisibleby 3 }} {{ 7 is divisibleby(3) }} {{ neg is odd }}",
      "{{ 'abc' is lower }} {{ 'ABC' is upper }} {{ 'aBc' is lower }} {{ '12' is lower }} {{ none is sameas "
      "none }} "
      "{{ t is sameas true }} {{ 1 is sameas true }}",
      "{{ range is callable }} {{ s is callable }} {{ s.upper is callable }} {{ 'upper' is filter }} {{ "
      "'odd' is test }} "
      "{{ 'zz' is filter }}",
      "{{ messages[0]['content'] is string and messages[0]['role'] == 'system' }}",
      "{{ 'x' if n is defined else 'y' }} {{ 'x' if undefined_name is not defined else 'y' }}",
      "{{ n is nosuchtest }}",
      "{% if false %}{{ n is nosuchtest }}{% endif %}ok",
  });
}

TEST(JinjaFeatures, StringAndDictMethods) {
  check({
      "[{{ '  pad  '.strip() }}][{{ '  pad  '.lstrip() }}][{{ '  pad  '.rstrip() }}][{{ 'xxaxx'.strip('x') "
      "}}]"
      "[{{ '\\n\\nhi\\n'.lstrip('\\n') }}][{{ '\\u3000wide\\u3000'.strip() }}]",
      "{{ s.startswith('Hell') }} {{ s.startswith('World', 6) }} {{ s.endswith('rld') }} {{ s.endswith(('x', "
      "'d')) }} "
      "{{ s.startswith(('a', 'b')) }}",
      "{{ 'a,b,,c'.split(',') }} {{ '  a  b c '.split() }} {{ 'a b c'.split(none, 1) }} {{ "
      "'a,b,c'.rsplit(',', 1) }} "
      "{{ ' a b '.rsplit(none, 1) }} {{ 'x'.split('x') }}",
      "{{ 'l1\\nl2\\r\\nl3'.splitlines() }} {{ s.upper() }} {{ s.lower() }} {{ 'hello wORLD "
      "they\\'re'.title() }} "
      "{{ 'hELLO'.capitalize() }}",
      "{{ s.replace('o', '0') }} {{ s.replace('o', '0', 1) }} {{ s.find('o') }} {{ s.rfind('o') }} {{ "
      "s.find('z') }} "
      "{{ 'é☃é'.find('☃') }} {{ s.count('l') }} {{ s.find('o', 5) }}",
      "{{ ', '.join(['a', 'b']) }} {{ '-'.join('xyz') }} {{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ ' "
      "'.isspace() }} "
      "{{ 'ab'.islower() }} {{ 'AB'.isupper() }} {{ 'a1'.isalnum() }}",
      "{{ messages[2].content.split('</think>')[-1].lstrip('\\n') }}|{{ "
      "messages[2].content.split('</think>')[0]"
      ".rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}",
      "{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d.keys() | list }} {{ d.values() | "
      "list }} "
      "{{ d.items() | list }}",
      "{% for k, v in tools[0].function.items() if k != 'parameters' %}{{ k }}={{ v }};{% endfor %}",
      "{{ s.nosuchmethod() }}",
      "{{ 'a'.split('') }}",
      "{{ ', '.join([1, 2]) }}",
  });
}

TEST(JinjaFeatures, Globals) {
  check({
      "{{ range(5) | list }} {{ range(2, 5) | list }} {{ range(10, 0, -3) | list }} {{ range(0) | list }} "
      "{{ range(5, 2) | list }}",
      "{{ dict(a=1, b='x') }} {{ dict({'k': 1}, j=2) }} {{ namespace(a=1).a }}",
      "{{ strftime_now('%Y') | length }} {{ strftime_now('%d %b %Y') | length > 9 }}",
      "{{ raise_exception('custom failure') }}",
      "line 1\nline 2 {{ raise_exception('on line ' ~ 2) }}",
      "{{ range(100001) | length }}",
      "{{ range(1, 2, 0) }}",
      "{{ nosuchfunction() }}",
      "{{ n() }}",
  });
}

TEST(JinjaFeatures, WhitespaceControl) {
  check({
      "a\n  {% if true %}\n  b\n  {% endif %}\n c {{ 1 }}  {% if true %}d{% endif %}\n",
      "{% for i in range(3) %}\n  {{ i }}\n{% endfor %}\n",
      "x  {%- if true -%}  y  {%- endif -%}  z",
      "x  {{- 'y' -}}  z\n  {{- 'w' }}\n",
      "{# c #}\nx {#- c -#}  y\n  {# c #}\n",
      "a\n    {%+ if true %}b{% endif +%}\nc",
      "  {% if true %}x{% endif %}  \n  {{ 'v' }}  {% if true %}\n{% endif %}",
      "{% if true %}\n\n{% endif %}\nend\n\n",
      "text\r\nwith\rcrlf{% if true %}\r\nx{% endif %}\r\n",
      "{%- raw -%}  {{ raw }}  {%- endraw -%}  after",
      "   {% raw %}\n  r\n   {% endraw %}\n",
      "{% set x = 1 -%}\n\n   {{ x }}",
      "\t {% if true %}\t\n\tin\n\t {%- endif %}\n",
      "{{ 'a' }}\n{{ 'b' }}\n",
      "{% macro m() %}\n  body\n{% endmacro %}\n[{{ m() }}]\n",
  });
}

TEST(JinjaFeatures, SyntaxErrors) {
  check({
      "{% if x %}no end",
      "line 1\n{% for x in y %}\n{% endif %}",
      "{% endfor %}",
      "{{ 'unterminated }}",
      "{{ x + }}",
      "{% if %}{% endif %}",
      "{{ (1, 2 }}",
      "{{ x ] }}",
      "a\nb\n{% nosuchtag %}",
      "{% include 'x.jinja' %}",
      "{{ }}",
      "{% break %}",
      "{# unterminated comment",
      "{% set 1 = 2 %}",
      "{% macro m(a=1, b) %}{% endmacro %}",
      "{{ x | }}",
      "{{ f(a=1, 2) }}",
      "{{ 'a' @ 'b' }}",
  });
}

}  // namespace
}  // namespace wgllm::test
