"""The audio plan as a user reads it before spending credits (``talkies plan``), or as JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

from gpu_worker.plan import AudioPlan, SilenceSpan
from gpu_worker.plan_glossary import glossed

EVENT_WORDS = {
    "impact": "lands on an impact",
    "flash": "lands on a flash",
    "cut": "lands on a cut",
    "any": "lands on any event",
}


def silence_text(span: SilenceSpan) -> str:
    if not span.seconds:
        return f"{span.start:.0%}-{span.end:.0%} of the clip"
    if span.from_end:
        return f"the last {span.start - span.end:g} s" if span.end == 0 else \
            f"{span.start:g}-{span.end:g} s before the end"
    return f"{span.start:g}-{span.end:g} s"


def plan_text(plan: AudioPlan) -> str:
    """Readable lines: picture, music, ambience, each SFX phrase and its event, dynamics."""
    m, a = plan.music, plan.ambience
    lines = [
        ("picture", plan.visual_prompt),
        ("music", m.description if m.enabled else "none (the prompt says no music)"),
        ("ambience", a.description.removeprefix("ambience: ") if a.enabled
         else "none (the prompt says no ambience)"),
    ]
    if plan.sfx:
        lines += [("sfx" if i == 0 else "", f'"{c.description}" ({EVENT_WORDS[c.event_kind]})')
                  for i, c in enumerate(plan.sfx)]
    else:
        note = "none named: impacts, flashes and cuts in the picture get a short generic hit"
        if glossed(plan.prompt):
            note += " (sound effects are read from English words only)"
        lines.append(("sfx", note))
    lines.append(("dynamics", plan.dynamics.shape.replace("_", " ")))
    lines.append(("silences", "; ".join(silence_text(s) for s in plan.dynamics.silences) or "none"))
    return "\n".join(f"{k + ':' if k else '':<10}{v}" for k, v in lines)


def plan_json(plan: AudioPlan) -> dict[str, Any]:
    """The whole plan as plain data; each silence also in words."""
    data = dataclasses.asdict(plan)
    for span, out in zip(plan.dynamics.silences, data["dynamics"]["silences"], strict=True):
        out["text"] = silence_text(span)
    return data
