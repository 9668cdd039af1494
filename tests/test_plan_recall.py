"""The plan's recall of sound-making actions and settings on 100+ ordinary prompts.

Print the figures: ``python -m tests.test_plan_recall``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gpu_worker.plan import AudioPlan, plan_prompt
from tests.plan_prompts import ACTIONS, HELD_OUT, QUIET, SETTINGS, Expect

GOAL = 0.9


@dataclass
class Recall:
    actions: int = 0
    actions_found: int = 0
    settings: int = 0
    settings_found: int = 0
    missed: list[str] | None = None

    @property
    def action_recall(self) -> float:
        return self.actions_found / self.actions

    @property
    def setting_recall(self) -> float:
        return self.settings_found / self.settings


def _hits(plan: AudioPlan, expect: Expect) -> tuple[list[bool], list[bool], list[str]]:
    _, sfx, ambient, setting = expect
    cues = " | ".join(c.description.lower() for c in plan.sfx)
    ambience = plan.ambience.description.lower()
    action_hits = [k in cues for k in sfx] + [k in cues or k in ambience for k in ambient]
    setting_hits = [k in ambience for k in setting]
    missed = [k for k, hit in zip(sfx + ambient + setting, action_hits + setting_hits) if not hit]
    return action_hits, setting_hits, missed


def measure(prompts: list[Expect]) -> Recall:
    result = Recall(missed=[])
    for expect in prompts:
        actions, settings, missed = _hits(plan_prompt(expect[0]), expect)
        result.actions += len(actions)
        result.actions_found += sum(actions)
        result.settings += len(settings)
        result.settings_found += sum(settings)
        result.missed += [f"{expect[0]!r}: {k}" for k in missed]  # type: ignore[operator]
    return result


def test_the_set_is_large_and_varied() -> None:
    assert len(ACTIONS) + len(SETTINGS) + len(QUIET) >= 100
    assert len({p for p, *_ in ACTIONS}) == len(ACTIONS) >= 100


def test_recall_of_sound_making_actions_and_settings_reaches_the_goal() -> None:
    recall = measure(ACTIONS + SETTINGS)
    assert recall.action_recall >= GOAL, recall.missed
    assert recall.setting_recall >= GOAL, recall.missed


@pytest.mark.parametrize("prompt", QUIET)
def test_a_scene_where_nothing_sounds_gets_no_sfx(prompt: str) -> None:
    assert plan_prompt(prompt).sfx == ()


def test_each_cue_is_the_prompts_own_words() -> None:
    """Every word AudioGen gets for an SFX is a word of the prompt."""
    for prompt, *_ in ACTIONS + HELD_OUT:
        words = set(prompt.lower().replace("'", " ").split())
        for cue in plan_prompt(prompt).sfx:
            assert set(cue.description.lower().replace("'", " ").split()) <= words, (prompt, cue)


@pytest.mark.parametrize("prompt", ["...", "and then", "with a bang with a crash with a thud", "a",
                                    "ÄÖÜ ß 日本語の音楽", "silence silence then silence", "1.5 2,5 s",
                                    "a man hits the drum with a bang with a crash, then"])
def test_odd_prompts_still_get_a_plan(prompt: str) -> None:
    plan = plan_prompt(prompt)
    assert plan.visual_prompt and plan.music.description and plan.ambience.description


if __name__ == "__main__":
    r = measure(ACTIONS + SETTINGS)
    quiet = sum(plan_prompt(p).sfx == () for p in QUIET)
    extra = sum(len(plan_prompt(p).sfx) for p, sfx, amb, _ in ACTIONS) - sum(
        len(sfx) for _, sfx, _, _ in ACTIONS)
    print(f"prompts: {len(ACTIONS)} with actions, {len(SETTINGS)} settings only, {len(QUIET)} quiet")
    print(f"action recall:  {r.actions_found}/{r.actions} = {r.action_recall:.3f}")
    print(f"setting recall: {r.settings_found}/{r.settings} = {r.setting_recall:.3f}")
    print(f"quiet prompts with no SFX: {quiet}/{len(QUIET)}; cues beyond the expected SFX count: {extra}")
    for line in r.missed or []:
        print("  missed", line)
    h = measure(HELD_OUT)
    print(f"held out ({len(HELD_OUT)} prompts, not tuned against): actions {h.actions_found}/{h.actions} "
          f"= {h.action_recall:.3f}, settings {h.settings_found}/{h.settings} = {h.setting_recall:.3f}")
    for line in h.missed or []:
        print("  missed", line)
