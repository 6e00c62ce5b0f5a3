"""Chat templates rendered in the sandbox: real-looking templates give exact prompts, hostile ones
are refused with one sentence and never run anything, and templates are found in model folders."""

import datetime
import json
import time

import pytest

from studio.core.errors import ModelFileError, SpecError
from studio.engine.backends.text import chat_template
from studio.engine.backends.text.chat_template import render_chat
from studio.models import formats
from studio.models.formats import find_chat_template
from studio.models.registry import inspect

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
# Multi-line, whitespace-controlled, with the helpers real templates lean on.
ALTERNATING = """\
{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] %}
    {%- set messages = messages[1:] %}
{%- endif %}
{%- set ns = namespace(turns=0) %}
{%- for message in messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- set ns.turns = ns.turns + 1 %}
        {{- '[INST] ' + ((system + '\\n\\n') if system is defined and loop.first else '') + message['content'] + ' [/INST]' }}
    {%- else %}
        {{- ' ' + message['content'] | trim + eos_token }}
    {%- endif %}
{%- endfor %}
"""
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Continue the story."},
]


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chatml_renders_exactly(add_generation_prompt):
    expected = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nContinue the story.<|im_end|>\n"
    if add_generation_prompt:
        expected += "<|im_start|>assistant\n"
    assert render_chat(CHATML, MESSAGES, add_generation_prompt=add_generation_prompt) == expected


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_llama3_renders_exactly(add_generation_prompt):
    messages = MESSAGES[:1] + [{"role": "user", "content": "  Continue the story.\n"}]  # trimmed
    expected = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nContinue the story.<|eot_id|>"
    )
    if add_generation_prompt:
        expected += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    got = render_chat(LLAMA3, messages, bos_token="<|begin_of_text|>", add_generation_prompt=add_generation_prompt)
    assert got == expected


def test_whitespace_control_namespace_and_slicing_work_as_in_transformers():
    messages = MESSAGES + [{"role": "assistant", "content": "Once. "}, {"role": "user", "content": "More."}]
    got = render_chat(ALTERNATING, messages, bos_token="<s>", eos_token="</s>")
    assert got == "<s>[INST] You are terse.\n\nContinue the story. [/INST] Once.</s>[INST] More. [/INST]"


def test_loop_controls_and_tojson_without_html_escaping():
    template = (
        "{% for m in messages %}{% if loop.index0 == 1 %}{% break %}{% endif %}"
        "{{ m | tojson }}{% endfor %}|{{ {'b': 1, 'a': [2]} | tojson(indent=1, sort_keys=true) }}"
    )
    messages = [{"role": "user", "content": "<b>naïve & ünï</b>"}, {"role": "user", "content": "skipped"}]
    assert render_chat(template, messages) == (
        '{"role": "user", "content": "<b>naïve & ünï</b>"}|{\n "a": [\n  2\n ],\n "b": 1\n}'
    )


def test_message_text_is_data_not_template():
    messages = [{"role": "user", "content": "{{ 7 * 7 }}{% include '/etc/passwd' %}"}]
    assert render_chat(CHATML, messages, add_generation_prompt=False) == (
        "<|im_start|>user\n{{ 7 * 7 }}{% include '/etc/passwd' %}<|im_end|>\n"
    )


def test_strftime_now_gives_todays_date():
    assert render_chat("{{ strftime_now('%d %b %Y') }}", MESSAGES) == datetime.date.today().strftime("%d %b %Y")


def test_raise_exception_message_surfaces_as_a_spec_error():
    with pytest.raises(SpecError, match="Conversation roles must alternate") as caught:
        render_chat(ALTERNATING, [{"role": "assistant", "content": "first"}])
    assert caught.value.field == "messages"
    assert "chat template" in caught.value.message


# --- hostile templates ----------------------------------------------------------------------------

INJECTIONS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch CANARY').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self.__init__.__globals__.__builtins__ }}",
    "{{ lipsum.__globals__['os'].system('touch CANARY') }}",
    "{{ config.items() }}",
    "{{ request.application.__globals__.__builtins__.__import__('os').popen('touch CANARY').read() }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}{{ os.system('touch CANARY') }}",
    "{% from 'os' import system %}{{ system('touch CANARY') }}",
    "{% extends '/etc/passwd' %}",
    "{% set x = [] %}{{ x.append(1) }}",
    "{% set d = {} %}{{ d.update({'a': 1}) }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{{ '{a.__class__.__base__}'.format_map({'a': 1}) }}",
    "{{ cycler | attr('__init__') | attr('__globals__') }}",
    "{{ '' | attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ ''.__class__ }}",
    "{{ dict.mro() }}",
    "{{ messages.__class__ }}",
    "{{ range.__globals__ }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_is_refused_and_runs_nothing(payload, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    canary = tmp_path / "CANARY"
    with pytest.raises(ModelFileError, match="^The model's chat template .*; instruct mode cannot use it[.]$"):
        render_chat(payload.replace("CANARY", str(canary)), MESSAGES)
    assert not canary.exists()
    assert list(tmp_path.iterdir()) == []


def test_unsafe_attribute_is_named_in_one_sentence():
    with pytest.raises(ModelFileError) as caught:
        render_chat("{{ ''.__class__ }}", MESSAGES)
    assert str(caught.value) == (
        "The model's chat template tried to reach `__class__`, which is not allowed; instruct mode cannot use it."
    )


def test_loading_another_template_is_refused_before_anything_runs():
    with pytest.raises(ModelFileError, match="tries to load another template .*include"):
        render_chat("{{ raise_exception('ran') }}{% include 'x' %}", MESSAGES)


@pytest.mark.parametrize("name", ["request", "config", "settings", "os"])
def test_names_the_template_was_not_given_print_nothing(name):
    """As in transformers an unknown name is undefined and prints as nothing: there is nothing
    behind it to leak (reaching into it raises, see INJECTIONS)."""
    assert render_chat("{{ %s }}" % name, MESSAGES) == ""


RUNAWAYS = {
    "top level": "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
    "in a set block": "{% set x %}{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"
    "{% endset %}",
    "in a macro": "{% macro f() %}{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"
    "{% endmacro %}{{ f() }}",
    "recursive loop": "{% for i in range(1000) recursive %}{% if loop.depth < 4 %}{{ loop(range(1000)) }}{% endif %}"
    "{% endfor %}",
}


@pytest.mark.parametrize("template", RUNAWAYS.values(), ids=list(RUNAWAYS))
def test_runaway_templates_are_stopped_quickly(template):
    # Stopped by the sandbox's loop or output limit (the sentence says which), not by finishing
    # its 10^10 iterations; no wall-clock assert, which a busy machine would make flaky.
    with pytest.raises(ModelFileError, match="loops more than|writes more than"):
        render_chat(template, MESSAGES)


BIG = "{% set s = 'x' * 1000000 %}"
AMPLIFIERS = {
    "repeat": "{{ 'x' * 1000000000 }}",
    "str.center": "{{ 'x'.center(1000000000) }}",
    "center filter": "{{ 'x' | center(1000000000) }}",
    "power": "{{ 9 ** 999999999 }}",
    "format width": "{{ '{:>1000000000}'.format('x') }}",
    "percent width": "{{ '%1000000000s' % 'x' }}",
    "format filter": "{{ '%1000000000s' | format('x') }}",
    "doubling ~": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    "doubling +": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    "doubling macro": "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% else %}{{ s | length }}{% endif %}"
    "{% endmacro %}{{ f('x', 64) }}",
    "join filter": "{{ range(100000) | join('y' * 100000) }}",
    "str.join": "{{ ('y' * 100000).join(range(100000) | map('string')) }}",
    "expandtabs": "{{ 'x\\t'.expandtabs(1000000000) }}",
    "replace filter": "{{ ('x' * 100000) | replace('', 'y' * 100000) }}",
    "str.replace": "{{ ('x' * 100000).replace('', 'y' * 100000) }}",
    "translate": "{{ ('x' * 100000).translate({120: 'y' * 100000}) }}",
    "to_bytes": "{{ (1).to_bytes(1000000000, 'big') }}",
    "tojson indent": "{{ [1, 2] | tojson(indent=1000000000) }}",
    "indent": "{{ ('x\\n' * 100000) | indent('y' * 1000) }}",
    "wordwrap": "{{ ('x ' * 100000) | wordwrap(1, wrapstring='y' * 1000) }}",
    "batch": "{{ [1] | batch(1000000000, 'x') | list }}",
    "sum of lists": "{% set l = range(100000) | list %}{{ [l, l, l, l, l, l, l, l, l, l, l] | sum(start=[]) }}",
    "printing a list": BIG + "{{ [s, s, s, s, s, s, s, s, s, s] }}",
    "list as text": BIG + "{{ [s, s] ~ '' }}",
    "buffered copies": BIG + "{% set b %}{% for i in range(1000) %}{{ s ~ i }}{% endfor %}{% endset %}",
    "slices": BIG + "{% for i in range(1000) %}{% set t = s[i:] %}{% endfor %}",
    "lipsum": "{{ lipsum(1000000) }}",
    "recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "output": "{% for i in range(2000) %}{{ messages[1].content * 100 }}{% endfor %}",
}


@pytest.mark.parametrize("template", AMPLIFIERS.values(), ids=list(AMPLIFIERS))
def test_templates_that_would_build_huge_values_are_refused(template):
    start = time.monotonic()
    with pytest.raises(ModelFileError, match="^The model's chat template .*; instruct mode cannot use it[.]$"):
        render_chat(template, MESSAGES)
    assert time.monotonic() - start < 5


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", [" " * 200_000, "x" * 300_000], ids=["spaces", "one long word"])
def test_wordwrap_of_a_long_run_is_refused_before_it_runs(text):
    """textwrap takes time that grows as run² / width, inside one call the render's time limit
    cannot interrupt (200,000 spaces at width 1: seconds past it); so it is costed first."""
    with pytest.raises(ModelFileError) as caught:
        render_chat("{{ messages[0].content | wordwrap(1) }}", [{"role": "user", "content": text}])
    assert caught.value.message == (
        f"The model's chat template wraps a run of {len(text):,} characters at width 1 "
        "with `wordwrap`, which would take too long; instruct mode cannot use it."
    )


def test_wordwrap_still_wraps_as_jinja_does():
    from jinja2 import Environment

    text = "The quick brown fox jumps over the lazy dog.\nA second paragraph, with a hyphen-ated word. " * 20
    for call in ("wordwrap(1)", "wordwrap(12)", "wordwrap(7, wrapstring='<br>')", "wordwrap(30, false)"):
        template = "{{ messages[0].content | " + call + " }}"
        expected = (
            Environment(trim_blocks=True, lstrip_blocks=True)
            .from_string(template)
            .render(messages=[{"role": "user", "content": text}])
        )
        assert render_chat(template, [{"role": "user", "content": text}]) == expected


def test_output_cap_names_the_limit():
    with pytest.raises(ModelFileError, match="writes more than 1,000,000 characters"):
        render_chat("{% for i in range(2000) %}{{ messages[1].content * 100 }}{% endfor %}", MESSAGES)


def test_slow_templates_run_out_of_time(monkeypatch):
    monkeypatch.setattr(chat_template, "MAX_RENDER_SECONDS", -1.0)
    with pytest.raises(ModelFileError, match="takes longer than"):
        render_chat(CHATML, MESSAGES)


def test_oversized_and_broken_templates_are_refused():
    with pytest.raises(ModelFileError, match="100,001 characters long"):
        render_chat("x" * 100_001, MESSAGES)
    with pytest.raises(ModelFileError, match="error on line 2"):
        render_chat("fine\n{% for %}", MESSAGES)
    with pytest.raises(ModelFileError, match="failed on line 1 .*UndefinedError"):
        render_chat("{{ messages[3].content.strip() }}", MESSAGES)


@pytest.mark.parametrize(
    "messages, wrong",
    [
        ("hello", "should be a list"),
        ([], "is empty"),
        ([{"content": "no role"}], "item 0 should be a dict with a text 'role'"),
        (["not a dict"], "item 0"),
        ([{"role": "user", "content": object()}], "may hold only text"),
        ([{"role": "user", "content": "x" * 1_000_001}], "more than the 1,000,000"),
    ],
)
def test_malformed_messages_are_spec_errors(messages, wrong):
    with pytest.raises(SpecError, match=wrong) as caught:
        render_chat(CHATML, messages)
    assert caught.value.field == "messages"


# --- finding a folder's template ------------------------------------------------------------------


def make_transformers(folder, **files):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 64}))
    (folder / "tokenizer.json").write_text("{}")
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text if isinstance(text, str) else json.dumps(text))
    return folder


def test_find_chat_template_reads_each_layout_in_order(tmp_path):
    assert find_chat_template(make_transformers(tmp_path / "jinja", chat_template__jinja=CHATML)) == CHATML
    assert (
        find_chat_template(make_transformers(tmp_path / "json", chat_template__json={"chat_template": LLAMA3}))
        == LLAMA3
    )
    folder = make_transformers(tmp_path / "tok", tokenizer_config__json={"chat_template": CHATML, "eos_token": "x"})
    assert find_chat_template(folder) == CHATML
    folder = make_transformers(
        tmp_path / "all",
        chat_template__jinja=CHATML,
        chat_template__json={"chat_template": LLAMA3},
        tokenizer_config__json={"chat_template": ALTERNATING},
    )
    assert find_chat_template(folder) == CHATML
    (folder / "chat_template.jinja").unlink()
    assert find_chat_template(folder) == LLAMA3
    (folder / "chat_template.json").write_text(json.dumps({"processor": "no template here"}))
    assert find_chat_template(folder) == ALTERNATING
    assert chat_template.find_chat_template is find_chat_template  # what the text backend imports


def test_find_chat_template_list_form_takes_default_else_first(tmp_path):
    named = [{"name": "tool_use", "template": LLAMA3}, {"name": "default", "template": CHATML}]
    assert (
        find_chat_template(make_transformers(tmp_path / "a", tokenizer_config__json={"chat_template": named})) == CHATML
    )
    unnamed = [{"name": "rag", "template": LLAMA3}, {"name": "tool_use", "template": CHATML}]
    assert (
        find_chat_template(make_transformers(tmp_path / "b", tokenizer_config__json={"chat_template": unnamed}))
        == LLAMA3
    )


def test_find_chat_template_none_when_absent(tmp_path):
    assert find_chat_template(make_transformers(tmp_path / "a")) is None
    assert find_chat_template(make_transformers(tmp_path / "b", tokenizer_config__json={"eos_token": "x"})) is None
    assert find_chat_template(make_transformers(tmp_path / "c", tokenizer_config__json={"chat_template": []})) is None
    assert find_chat_template(make_transformers(tmp_path / "d", chat_template__jinja="  \n")) is None


def test_find_chat_template_refuses_oversized_or_malformed_files(tmp_path):
    folder = make_transformers(tmp_path / "big", chat_template__jinja="x" * 400_001)
    with pytest.raises(
        ModelFileError, match=r"chat_template\.jinja is 400,001 bytes, too large to be a chat template\.$"
    ):
        find_chat_template(folder)
    folder = make_transformers(tmp_path / "long", chat_template__json={"chat_template": "x" * 100_001})
    with pytest.raises(ModelFileError, match="100,001 characters long"):
        find_chat_template(folder)
    folder = make_transformers(tmp_path / "huge", tokenizer_config__json={"pad": "x" * (formats.MAX_JSON_BYTES + 1)})
    with pytest.raises(ModelFileError, match="too large to be a model config"):
        find_chat_template(folder)
    folder = make_transformers(tmp_path / "shape", tokenizer_config__json={"chat_template": [{"name": "default"}]})
    with pytest.raises(ModelFileError, match="entries are not"):
        find_chat_template(folder)
    folder = make_transformers(tmp_path / "type", tokenizer_config__json={"chat_template": 42})
    with pytest.raises(ModelFileError, match="neither text nor a list"):
        find_chat_template(folder)
    folder = make_transformers(tmp_path / "bytes")
    (folder / "chat_template.jinja").write_bytes(b"\xff\xfe{{ x }}")
    with pytest.raises(ModelFileError, match="not UTF-8"):
        find_chat_template(folder)


def test_model_info_knows_whether_a_text_model_has_a_chat_template(tmp_path):
    from fake_models import write_fake_model

    with_template = inspect(make_transformers(tmp_path / "chat", chat_template__jinja=CHATML), "path")
    without = inspect(make_transformers(tmp_path / "base"), "path")
    broken = inspect(make_transformers(tmp_path / "broken", chat_template__jinja="x" * 400_001), "path")
    fake = inspect(write_fake_model(tmp_path / "fake", "text"), "path")
    assert (with_template.format, with_template.kind) == ("transformers", "text")
    assert with_template.has_chat_template is True
    assert without.has_chat_template is False
    assert broken.has_chat_template is False  # unreadable: no instruct mode, and no crash
    assert fake.has_chat_template is False
    (tmp_path / "base" / "tokenizer_config.json").write_text(json.dumps({"chat_template": LLAMA3}))
    assert without.has_chat_template is True  # read from disk each time, like context_length
    assert render_chat(find_chat_template(with_template.path), MESSAGES).endswith("<|im_start|>assistant\n")
