"""Token probabilities in the editor: which token the model wrote at each spot of its text, and
what else it nearly wrote (the top alternatives with their probabilities, from Token events).

Hovering a generated word shows them; the editor's context menu offers them, and choosing one
rewrites the generation up to that token with the alternative and continues from there (as
mikupad and SillyTavern do). The records themselves are the WriteSession's (state/write_tokens.py);
this module only words them for a person."""

from __future__ import annotations

import html

from studio.state.write_tokens import TokenAt


def visible(text: str) -> str:
    """A token's text as a person can read it in a list: spaces and line breaks shown."""
    return text.replace("\n", "⏎").replace(" ", "·") or "∅"


def tooltip_html(token: TokenAt) -> str:
    """The token and its alternatives as a small table, the one the model chose in bold."""
    rows = []
    for text, probability in token.record.alternatives:
        cell = html.escape(visible(text))
        if text == token.record.text:
            cell = f"<b>{cell}</b>"
        rows.append(f"<tr><td>{cell}</td><td align='right'>&nbsp;{probability * 100:.1f} %</td></tr>")
    if not rows:
        return ""
    return (
        f"<p style='white-space:pre'>Alternatives here (right-click to choose one):</p><table>{''.join(rows)}</table>"
    )
