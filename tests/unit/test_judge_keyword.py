"""Keyword judge: verb uses of class nouns, labels that name no source, ESC-10 descriptions.

Known answers written by hand; see :class:`auralens.evaluate.judge.KeywordJudge`.
"""

from __future__ import annotations

import pytest

from auralens.evaluate.judge import KeywordJudge

ESC10 = ("dog", "rooster", "rain", "sea_waves", "crackling_fire", "crying_baby", "sneezing",
         "clock_tick", "helicopter", "chainsaw")


@pytest.mark.parametrize(("label", "text"), [
    # right after a subject the bare or s form is the verb
    ("sea_waves", "A woman waves."), ("sea_waves", "She waves at the camera."),
    ("sea_waves", "Two children wave from the car."), ("crow", "The rooster crows."),
    ("crow", "A cockerel crows at dawn."), ("crackling_fire", "A soldier fires his rifle."),
    # an ed or ing form is always the verb
    ("sea_waves", "A man waving goodbye."), ("sea_waves", "Someone waved."),
    ("crow", "A rooster with a red comb crowing on a fence post."),
    ("crackling_fire", "Shots fired in the distance."),
])
def test_a_verb_use_of_a_class_noun_does_not_recognise_the_class(label: str, text: str) -> None:
    assert KeywordJudge().score("recognition", text, [label]) is False


@pytest.mark.parametrize(("label", "text"), [
    ("sea_waves", "Waves crash on the rocks."), ("sea_waves", "The sea waves roll in."),
    ("sea_waves", "Ocean waves."), ("sea_waves", "A beach with rolling waves."),
    ("sea_waves", "The sound of a wave."), ("crow", "A crow caws."),
    ("crow", "Crows caw in the trees."), ("crow", "A rooster and a crow."),
    ("crackling_fire", "The fire crackles."), ("crackling_fire", "A forest fire."),
    ("crackling_fire", "Fires burn."),
    # the verb crow is what a rooster does
    ("rooster", "The rooster crows."), ("rooster", "Something is crowing at dawn."),
])
def test_class_nouns_and_their_own_verbs_still_recognise(label: str, text: str) -> None:
    assert KeywordJudge().score("recognition", text, [label]) is True


@pytest.mark.parametrize(("text", "labels", "count"), [
    ("A woman waves while a dog barks.", [], 1),
    ("She waves as the waves crash.", [], 1),
    ("A woman waves.", ["sea_waves"], None),  # no sound word at all
    ("The rooster crows while a dog barks.", ["crow", "rooster", "dog"], 2),
])
def test_a_verb_use_is_no_source_in_the_count(text: str, labels: list[str],
                                               count: int | None) -> None:
    assert KeywordJudge().score("count", text, labels) == count


def test_a_label_that_names_no_source_counts_and_recognises_nothing() -> None:
    judge = KeywordJudge()
    # the official FUSS release labels every source "sound"
    assert judge.score("count", "The sound of rain.", ["sound"]) == 1
    assert judge.score("count", "The sound of rain and a dog.", ["sound", "sound"]) == 2
    assert judge.score("recognition", "The sound of rain.", ["sound"]) is None
    assert judge.score("recognition", "The sound of rain.", ["rain", "sound"]) is None
    assert judge.missing["recognition"] == 2
    assert judge.score("recognition", "The sound of rain.", ["sound|rain"]) is True


@pytest.mark.parametrize("label", ESC10)
def test_template_descriptions_of_esc10_classes_are_recognised(label: str) -> None:
    from auralens.scene.caption.base import sound_of
    from auralens.scene.compose.template import TemplateComposer

    text = TemplateComposer().compose([sound_of(label)], "zero-shot", labels=[label]).text
    assert KeywordJudge().score("recognition", text, [label]) is True
    assert KeywordJudge().score("recognition", sound_of(label), [label]) is True


def test_a_template_description_of_four_esc10_classes_names_four_sources() -> None:
    from auralens.scene.caption.base import sound_of
    from auralens.scene.compose.template import TemplateComposer

    labels = ["dog", "rooster", "rain", "sea_waves"]
    text = TemplateComposer().compose([sound_of(x) for x in labels], "zero-shot",
                                      labels=labels).text
    judge = KeywordJudge()
    assert judge.score("recognition", text, labels) is True
    assert judge.score("count", text, labels) == 4
    assert judge.score("recognition", text, ["crow"]) is False  # the rooster is crowing
