"""Bad or unusual input to the evaluation code: embedder options and cache keys, files that
embed to NaN, ratings files, judge-validation files, the keyword and LLM judges, CLAPScore
waves and KAD bandwidths. Each gives a right answer or a clear one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from factories.audio_files import tone_folder as _folder

from auralens import audio
from auralens.cli import main
from auralens.evaluate.embedders import build_embedder
from auralens.evaluate.fad import MetricInputError
from auralens.specs import SpecError

SR = 16000


# ----------------------------------------------------------------------------- embedders


def test_every_logmel_option_reaches_the_name_and_the_cache_key(tmp_path: Path, sine: np.ndarray) -> None:
    from auralens.cache import ArrayCache

    path = audio.write(tmp_path / "a.wav", sine, SR)
    cache = ArrayCache(tmp_path / "cache")
    default = build_embedder("logmel")
    high = build_embedder("logmel@floor=0.5")
    assert default.name == "logmel@sample_rate=16000,n_mels=64,n_fft=400,hop_length=160"
    assert high.name == default.name + ",floor=0.5"
    first = default.embed_file(path, cache=cache)
    # The second embedder must not be served the first one's cached frames.
    second = high.embed_file(path, cache=cache)
    assert cache.hits == 0
    np.testing.assert_array_equal(second, high.embed(audio.load(path, SR)))
    assert second.min() == pytest.approx(np.log(0.5)) and first.min() < np.log(0.5) - 1


def test_fad_with_another_floor_is_not_the_cached_score(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AURALENS_CACHE", str(tmp_path / "cache"))
    ref = _folder(tmp_path, "ref", [220, 330, 440, 550], 0.01)
    est = _folder(tmp_path, "est", [220, 330, 440, 550], 0.2)
    scores = {}
    for spec in ("logmel", "logmel@floor=0.5", "logmel@floor=0.5"):
        out = tmp_path / spec.replace("@", "_")
        assert main(["evaluate", "fad", str(ref), str(est), "--embedder", spec, "--out", str(out)]) == 0
        res = json.loads((out / "metrics.json").read_text())
        scores[spec] = res["fad"]
        assert res["embedder"] == build_embedder(spec).name
    fresh = build_embedder("logmel@floor=0.5")
    from auralens.evaluate.fad import fad

    frames = [[fresh.embed(audio.load(p, SR)) for p in sorted(d.iterdir())] for d in (ref, est)]
    assert scores["logmel@floor=0.5"] == pytest.approx(fad(*frames), rel=1e-9)
    assert scores["logmel@floor=0.5"] != pytest.approx(scores["logmel"], rel=1e-3)


def test_a_models_dtype_is_in_the_embedder_name() -> None:
    import torch

    from auralens.encoders.base import EXTRACTORS, Extractor

    class Fake(Extractor):
        name = "fakedtype:tiny"
        sample_rate = 16000
        dim = 3
        layer = 2

        def __init__(self, dtype: str | None = None) -> None:
            self.torch_dtype = {None: torch.float32, "bfloat16": torch.bfloat16}[dtype]

        def embed(self, wave: np.ndarray) -> np.ndarray:
            return np.ones((7, 3), dtype=np.float32)

    if "fakedtype" not in EXTRACTORS:
        EXTRACTORS.register("fakedtype", lambda spec, **kw: Fake(**kw))
    # float32 (the default) keeps the name it always had
    assert build_embedder("fakedtype:tiny").name == "fakedtype:tiny@layer=2"
    assert build_embedder("fakedtype:tiny@dtype=bfloat16").name == "fakedtype:tiny@layer=2,dtype=bfloat16"


@pytest.mark.parametrize(("spec", "message"), [
    ("logmel@sample_rate=0", "sample_rate must be a whole number ≥ 1, got 0"),
    ("logmel@sample_rate=10", "sample_rate must be 1000–768000 Hz, got 10"),
    ("logmel@n_mels=2.5", "n_mels must be a whole number ≥ 1, got 2.5"),
    ("logmel@n_mels=0", "n_mels must be a whole number ≥ 1, got 0"),
    ("logmel@hop_length=0", "hop_length must be a whole number ≥ 1, got 0"),
    ("logmel@n_fft=true", "n_fft must be a whole number ≥ 1, got True"),
    ("logmel@floor=-1", "floor must be a finite number ≥ 0, got -1"),
    ("mfcc@n_mfcc=0", "n_mfcc must be a whole number ≥ 1, got 0"),
    ("mfcc@n_mfcc=500", "n_mfcc (500) cannot exceed n_mels (64)"),
    ("mfcc@n_mfcc=50,n_mels=40", "n_mfcc (50) cannot exceed n_mels (40)"),
])
def test_weightfree_embedder_options_are_checked_when_built(spec: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        build_embedder(spec)
    assert str(err.value) == f"metric embedder {spec}: invalid options ({message})"


def _no_embedding(monkeypatch) -> list[object]:
    """Record any call to embed_folders (the metric commands embed through it)."""
    from auralens.evaluate import folders

    calls: list[object] = []
    monkeypatch.setattr(folders, "embed_folders", lambda *a, **kw: calls.append(a) or [{}, {}])
    return calls


def test_an_option_error_is_not_reported_as_unreadable_files(tmp_path: Path, capsys,
                                                               monkeypatch) -> None:
    ref = _folder(tmp_path, "ref", [220, 330], 0.01)
    capsys.readouterr()
    assert main(["evaluate", "fad", str(ref), str(ref), "--embedder", "logmel@hop_length=0"]) == 1
    err = capsys.readouterr().err
    assert err == ("error: metric embedder logmel@hop_length=0: invalid options "
                   "(hop_length must be a whole number ≥ 1, got 0)\n")
    calls = _no_embedding(monkeypatch)
    assert main(["evaluate", "kad", str(ref), str(ref), "--embedder", "mfcc@n_mfcc=65"]) == 1
    assert "n_mfcc (65) cannot exceed n_mels (64)" in capsys.readouterr().err and calls == []


def test_an_option_error_raised_while_embedding_is_not_a_skip(tmp_path: Path) -> None:
    from auralens.evaluate.folders import embed_folders

    class Broken:
        name = "broken"

        def embed_file(self, path: Path, cache: object = None) -> np.ndarray:
            raise SpecError("metric embedder 'broken': bad option")

    ref = _folder(tmp_path, "ref", [220, 330], 0.01)
    skipped: list[dict[str, str]] = []
    with pytest.raises(SpecError, match="bad option"):
        embed_folders([(ref, "reference")], Broken(), skipped)
    assert skipped == []


def test_a_file_that_embeds_to_nan_is_skipped_and_listed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AURALENS_CACHE", str(tmp_path / "cache"))
    ref = _folder(tmp_path, "ref", [220, 330, 440, 550], 0.01)
    est = _folder(tmp_path, "est", [220, 330, 440, 550], 0.2)
    spec = "logmel@floor=0,n_mels=16"
    for metric in ("fad", "kad"):
        assert main(["evaluate", metric, str(ref), str(est), "--embedder", spec,
                     "--out", str(tmp_path / f"clean_{metric}")]) == 0
    # Digital silence has log-mel -inf with floor 0: that file cannot be scored
    audio.write(est / "silence.wav", np.zeros(SR, np.float32), SR)
    for metric in ("fad", "kad"):
        out = tmp_path / metric
        assert main(["evaluate", metric, str(ref), str(est), "--embedder", spec, "--out", str(out)]) == 0
        res = json.loads((out / "metrics.json").read_text())
        clean = json.loads((tmp_path / f"clean_{metric}" / "metrics.json").read_text())
        assert [s["file"] for s in res["skipped"]] == [str(est / "silence.wav")]
        assert "silence.wav: its embedding contains NaN or inf" in res["skipped"][0]["error"]
        # the rest is scored exactly as without the silent file
        assert res[metric] == clean[metric] and res["n_eval_frames"] == clean["n_eval_frames"]


@pytest.mark.parametrize(("metric", "args", "message"), [
    ("fad", ["--shrinkage", "bogus"], "unknown shrinkage 'bogus'; use 'ledoit-wolf' or a float"),
    ("fad", ["--shrinkage", "2"], "shrinkage intensity must be in [0, 1], got 2.0"),
    ("kad", ["--kernel", "bogus"], "unknown kernel 'bogus'; choose one of rbf, iq, imq"),
    ("kad", ["--sigma", "0"], "kernel bandwidth sigma must be positive and finite, got 0.0"),
])
def test_metric_options_are_checked_before_embedding(tmp_path: Path, capsys, monkeypatch,
                                                     metric: str, args: list[str], message: str) -> None:
    ref = _folder(tmp_path, "ref", [220, 330], 0.01)
    calls = _no_embedding(monkeypatch)
    capsys.readouterr()
    assert main(["evaluate", metric, str(ref), str(ref), *args]) == 1
    assert capsys.readouterr().err == f"error: {message}\n"
    assert calls == []  # refused before either folder was embedded


def test_kad_per_file_checks_sigma_before_using_it() -> None:
    from auralens.evaluate.kad import kad_per_file

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 4)), rng.standard_normal((10, 4))
    for sigma in (0.0, -1.0, float("nan")):
        with pytest.raises(MetricInputError, match="sigma must be positive and finite"):
            kad_per_file(x, {"a": y}, sigma=sigma)
    with pytest.raises(MetricInputError, match="unknown kernel 'gauss'"):
        kad_per_file(x, {"a": y}, sigma=1.0, kernel="gauss")


# ----------------------------------------------------------------------------- ratings


def test_save_rating_writes_by_the_files_own_header(tmp_path: Path) -> None:
    from auralens.evaluate.ratings import COLUMNS, load_ratings, save_rating

    p = tmp_path / "ratings.csv"
    reordered = list(reversed(COLUMNS))
    p.write_text(",".join(reordered) + "\n")
    save_rating(p, rater="ann", run="r", version="r/post", clip="c1", visual=2, audio=5,
                comment="ok", timestamp="2024-01-01T00:00:00")
    rows = p.read_text().splitlines()
    assert rows[0] == ",".join(reordered)
    assert rows[1] == ",ok,5,2,c1,r/post,r,ann,2024-01-01T00:00:00"  # render first: none named
    (r,) = load_ratings(p)
    assert (r.rater, r.version, r.clip, r.visual, r.audio) == ("ann", "r/post", "c1", 2, 5)


@pytest.mark.parametrize("text", ["a,b\n1,2\n", "rater,version,clip,visual,audio\nann,v,c,1,1\n"])
def test_save_rating_refuses_a_file_that_is_not_a_ratings_file(tmp_path: Path, text: str) -> None:
    from auralens.evaluate.ratings import RatingError, save_rating

    p = tmp_path / "other.csv"
    p.write_text(text)
    with pytest.raises(RatingError) as err:
        save_rating(p, rater="ann", run="r", version="v", clip="c", visual=1, audio=1)
    assert str(err.value).startswith(f"{p}: not a ratings CSV") and "\n" not in str(err.value)
    assert p.read_text() == text  # left untouched


# ----------------------------------------------------------------------------- judge validation


def _results(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _judged(i: str, count: int) -> dict:
    return {"id": i, "method": "m", "count": count, "count_source": "judge"}


def test_annotated_counts_above_four_are_clipped_and_below_one_refused(tmp_path: Path) -> None:
    from auralens.evaluate.judge_validation import ValidationError, judge_agreement

    res = _results(tmp_path / "results.jsonl", [_judged("a", 4), _judged("b", 2)])
    ann = tmp_path / "ann.csv"
    ann.write_text("id,count,labels_included\na,5,\nb,2,\n")
    # "5 sources" is "four or more" on the judge's scale: it agrees with a judged 4
    rep = judge_agreement(ann, res)
    assert rep["count"]["agreement"] == 1.0 and rep["count"]["confusion"] == {"2->2": 1, "4->4": 1}
    for bad in ("0", "²"):
        ann.write_text(f"id,count,labels_included\na,4,\nb,{bad},\n")
        with pytest.raises(ValidationError) as err:
            judge_agreement(ann, res)
        assert str(err.value).startswith(f"{ann}:3: count must be") and repr(bad) in str(err.value)


def test_judge_validate_reads_a_bom_csv_and_refuses_a_row_without_id(tmp_path: Path, capsys) -> None:
    from auralens.evaluate.judge_validation import judge_agreement

    res = _results(tmp_path / "results.jsonl", [_judged("a", 3)])
    ann = tmp_path / "ann.csv"
    ann.write_text("id,count,labels_included\na,3,\n", encoding="utf-8-sig")  # as Excel saves it
    assert judge_agreement(ann, res)["count"]["agreement"] == 1.0
    noid = _results(tmp_path / "noid.jsonl", [_judged("a", 3), {"method": "m", "count": 2}])
    capsys.readouterr()
    assert main(["experiment", "judge-validate", str(ann), str(noid)]) == 1
    assert capsys.readouterr().err == f"error: {noid}:2: result row has no id\n"


# ----------------------------------------------------------------------------- judges


@pytest.mark.parametrize(("text", "labels", "count"), [
    ("a dog barks", ["Dog barking"], 1),
    ("a dog barks", ["Bark"], 1),
    ("A man speaks", ["Male speech, man speaking"], 1),
    ("a crackling fire", ["Crackling fire"], 1),
    ("a dog barks while a man speaks", ["Dog barking", "Male speech, man speaking"], 2),
    ("a dog barks near the church bells", ["Church bells"], 2),
    ("I saw a category of carpets in the season", [], None),  # saw, cat, car, sea: no sound
    ("cats and cars by the seas", [], 3),
    ("water is dripping while babies cry", [], 2),
])
def test_keyword_count_counts_each_source_once_and_whole_words(text: str, labels: list[str],
                                                               count: int | None) -> None:
    from auralens.evaluate.judge import KeywordJudge

    assert KeywordJudge().score("count", text, labels) == count


def test_keyword_recognition_matches_whole_words() -> None:
    from auralens.evaluate.judge import KeywordJudge

    judge = KeywordJudge()
    assert judge.score("recognition", "a category of carpets", ["cat"]) is False
    assert judge.score("recognition", "two cats meowing", ["cat"]) is True
    assert judge.score("recognition", "the sneezes of a child", ["sneezing"]) is True


@pytest.mark.parametrize(("labels", "text", "count"), [
    (["Male_speech_and_man_speaking", "Dishes_and_pots_and_pans"],
     "a man speaks while dishes clatter", 2),
    (["Walk_and_footsteps", "Gunshot_and_gunfire"], "footsteps, then a gunshot", 2),
    (["door_wood_knock", "door_wood_creaks"], "someone knocks on a door, then the door creaks", 2),
    (["water_drops", "pouring_water"], "water drips and water is poured", 2),
    (["Male_speech_and_man_speaking", "Female_speech_and_woman_speaking"],
     "a man speaks while a woman speaks", 2),
    # "and" is no sound word: only the rain and wind groups are mentioned
    (["Walk_and_footsteps", "Gunshot_and_gunfire"], "rain and wind", 2),
    (["Dog barking"], "a dog barking", 1),  # the label and the dog group: one dog
])
def test_keyword_count_keeps_given_labels_apart(labels: list[str], text: str, count: int) -> None:
    from auralens.evaluate.judge import KeywordJudge

    assert KeywordJudge().score("count", text, labels) == count


@pytest.mark.parametrize("labels", [["Male_speech_and_man_speaking"], ["Dishes_and_pots_and_pans"],
                                    ["Walk_and_footsteps", "Gunshot_and_gunfire"],
                                    ["Domestic_sounds_and_home_sounds"]])
def test_keyword_recognition_ignores_stopwords_of_labels(labels: list[str]) -> None:
    from auralens.evaluate.judge import KeywordJudge

    assert KeywordJudge().score("recognition", "the sound of rain and wind", labels) is False
    assert KeywordJudge().score("recognition", "a dog and a cat", labels) is False


@pytest.mark.parametrize(("label", "text"), [
    # ESC-10 classes
    ("dog", "dogs barking"), ("crying_baby", "a crying baby"), ("rooster", "rooster crows"),
    ("clock_tick", "clock ticking"), ("sea_waves", "sea waves"),
    ("crackling_fire", "crackling fire"), ("helicopter", "helicopter"), ("chainsaw", "chainsaw"),
    ("rain", "rain"), ("sneezing", "sneezing"),
    # other endings of the label's words
    ("Growling", "a dog growls"), ("Growling", "a low growl"), ("Drilling", "an electric drill"),
    ("Yelling", "a man yells"), ("horses", "a horse neighs"), ("snoring", "loud snore"),
    ("snoring", "a man snores"), ("breathing", "you can hear him breathe"),
    ("breathing", "someone breathes"), ("keyboard_typing", "someone types"),
    ("crying_baby", "the baby cried"), ("crying_baby", "babies"), ("sneezing", "he sneezed"),
    ("water", "water is dripping"), ("dog", "puppies yapping"), ("rain", "drizzling"),
    # compounds, closed or written as two words
    ("rain", "heavy rainfall"), ("rain", "a rainstorm"), ("rain", "raindrops"),
    ("sea_waves", "the seashore"), ("sea_waves", "at the seaside"),
    ("sea_waves", "the shoreline"), ("dog", "a doggy yaps"), ("chainsaw", "a chain saw"),
    ("chainsaw", "chain saws"), ("chainsaw", "saws"), ("chainsaw", "sawing wood"),
    ("water", "a waterfall"),
])
def test_keyword_recognition_matches_other_forms_of_a_word(label: str, text: str) -> None:
    from auralens.evaluate.judge import KeywordJudge

    assert KeywordJudge().score("recognition", text, [label]) is True


@pytest.mark.parametrize(("label", "text"), [
    ("chainsaw", "I saw a tree"),  # the past of "see"; so a bare "a saw cuts wood" is not one
    ("chainsaw", "a saw cuts wood"),
    ("cat", "a category"), ("car", "a carpet"), ("car", "a caring voice"),
    ("sea_waves", "the season"), ("sea_waves", "a seal"), ("rain", "a rainbow"),
    ("rain", "a brainstorm"), ("wind", "the windows"), ("dog", "dogma"),
    # only the listed compounds name their first part's sound
    ("water", "a sleek streamlined car"), ("wind", "an unexpected financial windfall"),
    ("water", "a cafe on the waterfront"), ("water", "a bench by the riverside"),
])
def test_keyword_recognition_refuses_look_alike_words(label: str, text: str) -> None:
    from auralens.evaluate.judge import KeywordJudge

    assert KeywordJudge().score("recognition", text, [label]) is False


@pytest.mark.parametrize(("label", "text", "recognised"), [
    # fuss-manifest --label-mode all: one source with several names
    ("Bark|Dog|Domestic_animals_and_pets|Animal", "A dog barks loudly.", True),
    ("Rain|Water", "Rain falls on the roof.", True),
    ("Rain|Water", "A dog barks.", False),
])
def test_keyword_judge_takes_a_joined_label_as_one_source_with_several_names(
        label: str, text: str, recognised: bool) -> None:
    from auralens.evaluate.judge import KeywordJudge

    judge = KeywordJudge()
    assert judge.score("recognition", text, [label]) is recognised
    assert judge.score("count", text, [label]) == 1
    assert judge.score("count", "A dog barks in the rain.", [label, "Rain|Water"]) == 2


@pytest.mark.parametrize(("labels", "text", "count"), [
    (["clock_alarm", "clock_tick"], "A clock ticks.", 1),
    (["water_drops", "pouring_water"], "Water drips.", 1),
    (["car_horn", "engine"], "An engine idles.", 1),
    (["crow", "rooster"], "A rooster crows.", 1),
    (["Bark", "Dog"], "A dog barks.", 1),
    (["Speech", "Male_speech_and_man_speaking"], "A man speaks.", 1),
    # two sources, each named by a word of its own
    (["clock_alarm", "clock_tick"], "An alarm clock rings while a clock ticks.", 2),
    (["car_horn", "engine"], "A car horn honks while an engine idles.", 2),
    (["crow", "rooster"], "A crow caws and a rooster crows.", 2),
    (["door_wood_knock", "door_wood_creaks"], "someone knocks on a door and it creaks", 2),
])
def test_keyword_count_counts_a_source_several_labels_name_once(labels: list[str], text: str,
                                                                count: int) -> None:
    from auralens.evaluate.judge import KeywordJudge

    assert KeywordJudge().score("count", text, labels) == count


@pytest.mark.parametrize(("label", "text"), [
    ("can_opening", "You can hear birds chirping."), ("can_opening", "A door opens slowly."),
    ("hand_saw", "People clap their hands."), ("car_horn", "A car drives past."),
    ("clock_alarm", "A clock ticks."), ("mouse_click", "A mouse squeaks."),
    ("crying_baby", "A seagull cries."), ("toilet_flush", "Toilet paper being torn."),
    ("engine", "A fire engine siren."), ("crackling_fire", "A fire truck's siren wails."),
    ("door_wood_knock", "A wooden door creaks open."), ("keyboard_typing", "A keyboard melody."),
    ("washing_machine", "Someone washing dishes."), ("glass_breaking", "Water poured into a glass."),
    ("chirping_birds", "Crickets chirping at night."), ("vacuum_cleaner", "A street cleaner."),
])
def test_keyword_recognition_needs_more_than_a_generic_word_of_the_label(label: str,
                                                                         text: str) -> None:
    from auralens.evaluate.judge import KeywordJudge

    assert KeywordJudge().score("recognition", text, [label]) is False


@pytest.mark.parametrize(("label", "text"), [
    ("can_opening", "A can is opened with a hiss."), ("can_opening", "Someone opening a soda can."),
    ("hand_saw", "A handsaw cutting through a plank."), ("hand_saw", "He saws with a hand saw."),
    ("car_horn", "Drivers honking."), ("clock_alarm", "An alarm clock rings."),
    ("mouse_click", "Repeated clicking of a mouse."), ("crying_baby", "An infant is crying."),
    ("toilet_flush", "A toilet flushes."), ("engine", "A motor revs up."),
    ("door_wood_knock", "Knocking on the door."), ("keyboard_typing", "Fast typing."),
    ("washing_machine", "The washer rumbles."), ("washing_machine", "A washing machine spins."),
    ("glass_breaking", "A glass shatters."), ("glass_breaking", "Breaking glass."),
    ("chirping_birds", "Songbirds chirping."), ("vacuum_cleaner", "Someone vacuuming."),
    ("thunderstorm", "Thunder rumbles."), ("airplane", "A jet plane roars."),
    ("water_drops", "Droplets of water dripping."), ("brushing_teeth", "Someone brushes their teeth."),
    ("church_bells", "Bells toll."), ("pouring_water", "Water is poured."),
])
def test_keyword_recognition_of_classes_named_by_other_words(label: str, text: str) -> None:
    from auralens.evaluate.judge import KeywordJudge

    assert KeywordJudge().score("recognition", text, [label]) is True


def test_keyword_judge_word_cache_is_bounded() -> None:
    from auralens.evaluate.judge import KeywordJudge, _stems

    size = _stems.cache_info().maxsize
    assert size is not None
    words = [f"w{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676 % 26)}{chr(97 + i // 17576)}"
             for i in range(size + 1000)]
    KeywordJudge().score("count", " ".join(words))
    assert _stems.cache_info().currsize <= size


def test_llm_judge_recognition_without_labels_is_missing_without_asking() -> None:
    from auralens.evaluate.judge import LLMJudge

    asked: list[list[dict]] = []

    def chat(messages: list[dict]) -> str:
        asked.append(messages)
        return "ANSWER: Yes"

    judge = LLMJudge(chat=chat, name="fn")
    assert judge.score("recognition", "A dog barks.", None) is None
    assert judge.score("recognition", "A dog barks.", []) is None
    assert asked == [] and judge.missing["recognition"] == 2
    assert judge.score("recognition", "A dog barks.", ["dog"]) is True and len(asked) == 1


def test_prompt_placeholders_in_the_description_are_kept_verbatim() -> None:
    from auralens.evaluate.judge import build_messages

    text = "A sign reads {labels} and {text}."
    user = build_messages("recognition", text, ["dog", "{text}"])[1]["content"]
    assert f'"""{text}"""' in user.replace("\n", "")
    assert "dog, {text}" in user and user.count("A sign reads") == 1


# ----------------------------------------------------------------------------- CLAPScore


def test_clapscore_refuses_waves_it_cannot_score(tiny_model) -> None:
    from auralens.evaluate.clapscore import ClapScorer

    scorer = ClapScorer(tiny_model("clap_tiny"))
    rng = np.random.default_rng(0)
    mono = 0.1 * rng.standard_normal(SR).astype(np.float32)
    stereo = np.stack([mono, mono])  # [C, T]: averaged over the channels
    np.testing.assert_allclose(scorer.embed_audio([stereo], SR), scorer.embed_audio([mono], SR),
                               atol=1e-6)
    nan = mono.copy()
    nan[10] = np.nan
    for wave, message in [(stereo.T, r"audio clip 1: expected mono \[T\] or channels-first "
                                     r"\[C, T\] audio, got shape \(16000, 2\)"),
                          (nan, "audio clip 1: audio contains NaN or inf samples"),
                          (np.zeros(0, np.float32), r"audio clip 1: empty audio \(0 samples\)")]:
        with pytest.raises(MetricInputError, match=message):
            scorer.score([mono, wave], ["a", "b"], SR)
    with pytest.raises(MetricInputError, match="sample rate must be a whole number"):
        scorer.score([mono], ["a"], 0)
