"""Class-slot TDCN++: one output per sound class, merged into M estimates at inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories.separate import MICRO, micro_config

from auralens.checkpoint_io import read_checkpoint, write_checkpoint
from auralens.data import DatasetError
from auralens.data.mix import to_slots
from auralens.errors import CheckpointMismatchError
from auralens.scene.separate.loss import assigned_loss, pairwise_loss
from auralens.scene.separate.tdcnpp import (
    TDCNpp,
    TDCNppConfig,
    average_checkpoints,
    load_checkpoint,
    merge_slots,
    save_checkpoint,
)
from auralens.scene.separate.train import init_model

LABELS = [f"c{i}" for i in range(6)]


def test_merge_slots_keeps_the_loudest_and_sums_the_rest() -> None:
    est = torch.zeros(1, 6, 8)
    for s, level in enumerate([0.1, 3.0, 0.2, 2.0, 1.0, 0.05]):
        est[0, s] = level * torch.linspace(1, 2, 8)
    out = merge_slots(est, 4)
    assert out.shape == (1, 4, 8)
    torch.testing.assert_close(out[0, 0], est[0, 1])  # loudest first
    torch.testing.assert_close(out[0, 1], est[0, 3])
    torch.testing.assert_close(out[0, 2], est[0, 4])
    torch.testing.assert_close(out[0, 3], est[0, [0, 2, 5]].sum(0))  # the rest, summed
    torch.testing.assert_close(out.sum(1), est.sum(1))
    torch.testing.assert_close(merge_slots(est[:, :4], 4), est[:, :4])  # nothing to merge


def test_slot_model_outputs_m_estimates_that_sum_to_the_mixture() -> None:
    torch.manual_seed(0)
    model = TDCNpp(micro_config(num_slots=6, slot_labels=LABELS)).eval()
    x = 0.1 * torch.randn(2, 3000)
    with torch.no_grad():
        est = model(x)
        slots = model(x, slots=True)
    assert est.shape == (2, 4, 3000) and slots.shape == (2, 6, 3000)
    torch.testing.assert_close(est.sum(1), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(slots.sum(1), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(est, merge_slots(slots, 4))


def test_slot_config_checks_and_checkpoint_round_trip(tmp_path) -> None:
    with pytest.raises(ValueError, match="num_slots"):
        micro_config(num_slots=3)
    with pytest.raises(ValueError, match="slot_labels"):
        micro_config(num_slots=6, slot_labels=LABELS[:5])
    with pytest.raises(CheckpointMismatchError, match="slot_labels"):
        TDCNppConfig.from_dict({**MICRO, "num_slots": 6, "slot_labels": "c0,c1"})
    with pytest.raises(CheckpointMismatchError, match="slot_labels"):
        TDCNppConfig.from_dict({**MICRO, "num_slots": 2, "slot_labels": [1, 2]})
    cfg = micro_config(num_slots=6, slot_labels=LABELS)
    path = save_checkpoint(tmp_path / "m.safetensors", TDCNpp(cfg))
    model, _ = load_checkpoint(path)
    assert model.cfg == cfg and model.cfg.outputs == 6
    # a config without slots still reads (older checkpoints have no slot keys)
    old = {k: v for k, v in micro_config().to_dict().items() if k not in ("num_slots", "slot_labels")}
    assert TDCNppConfig.from_dict(old).outputs == 4


def test_to_slots_sums_each_class_into_its_row() -> None:
    refs = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = to_slots(refs, ["b", "a", "b"], {"a": 0, "b": 1, "c": 2})
    np.testing.assert_array_equal(out[0], refs[1])
    np.testing.assert_array_equal(out[1], refs[0] + refs[2])
    np.testing.assert_array_equal(out[2], 0)
    np.testing.assert_allclose(out.sum(0), refs.sum(0))
    with pytest.raises(DatasetError, match="'z' has no output slot"):
        to_slots(refs, ["a", "z", "b"], {"a": 0, "b": 1})


@pytest.mark.parametrize("scale_invariant", [False, True])
def test_assigned_loss_is_the_diagonal_of_the_pair_losses(scale_invariant: bool) -> None:
    g = torch.Generator().manual_seed(1)
    refs = torch.randn(3, 5, 400, generator=g)
    refs[0, 2] = 0  # an absent class
    refs[1, 4] = 0
    est = torch.randn(3, 5, 400, generator=g)
    mix = refs.sum(1)
    pair = pairwise_loss(refs, est, mix, scale_invariant=scale_invariant)
    want = pair.diagonal(dim1=1, dim2=2).mean()
    torch.testing.assert_close(assigned_loss(refs, est, mix, scale_invariant=scale_invariant), want)
    # the exact references score the 30 dB cap on active slots
    perfect = assigned_loss(refs, refs.clone(), mix)
    assert float(perfect) < float(assigned_loss(refs, est, mix))


def test_init_copies_the_trunk_into_a_slot_network(tmp_path) -> None:
    torch.manual_seed(0)
    source = TDCNpp(micro_config())
    path = save_checkpoint(tmp_path / "src.safetensors", source)
    model = init_model(path, micro_config(num_slots=6, slot_labels=LABELS))
    assert model.cfg.outputs == 6 and model.mask_proj.out_channels == 6 * model.cfg.num_bins
    for name, value in source.state_dict().items():
        if not name.startswith("mask_proj"):
            torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    # the same config loads exactly; any other difference is refused as before
    same = init_model(path, micro_config())
    for name, value in source.state_dict().items():
        torch.testing.assert_close(same.state_dict()[name], value, rtol=0, atol=0)
    with pytest.raises(CheckpointMismatchError, match="config mismatch"):
        init_model(path, micro_config(num_slots=6, slot_labels=LABELS, bottleneck=8))


def test_init_refuses_slots_of_other_classes_and_reads_folders(tmp_path) -> None:
    torch.manual_seed(0)
    slot_cfg = micro_config(num_slots=6, slot_labels=LABELS)
    (tmp_path / "run").mkdir()
    path = save_checkpoint(tmp_path / "run" / "model.safetensors", TDCNpp(slot_cfg))
    # the same classes continue exactly, also from the run's folder
    same = init_model(tmp_path / "run", slot_cfg)
    torch.testing.assert_close(same.mask_proj.weight, load_checkpoint(path)[0].mask_proj.weight,
                               rtol=0, atol=0)
    # other classes, same count: copying would put each slot on the wrong class
    other = micro_config(num_slots=6, slot_labels=[f"d{i}" for i in range(6)])
    with pytest.raises(CheckpointMismatchError, match="do not match this run's classes"):
        init_model(path, other)
    # a universal run would silently drop the trained slot layer
    with pytest.raises(CheckpointMismatchError, match="assign=classes"):
        init_model(path, micro_config())


def test_average_accepts_headers_written_before_the_slot_fields(tmp_path) -> None:
    torch.manual_seed(0)
    new = save_checkpoint(tmp_path / "new.safetensors", TDCNpp(micro_config()))
    header, state = read_checkpoint(new, "TDCN++", CheckpointMismatchError)
    header["model_args"] = {k: v for k, v in header["model_args"].items()
                            if k not in ("num_slots", "slot_labels")}
    old = write_checkpoint(tmp_path / "old.safetensors", {k: 3 * v for k, v in state.items()}, header)
    out = average_checkpoints([old, new], tmp_path / "avg.safetensors")
    model, _ = load_checkpoint(out)
    name = "mask_proj.weight"
    torch.testing.assert_close(model.state_dict()[name], 2 * state[name])
    # a real config difference is still refused
    other = save_checkpoint(tmp_path / "other.safetensors", TDCNpp(micro_config(num_slots=6, slot_labels=LABELS)))
    with pytest.raises(CheckpointMismatchError, match="different TDCN\\+\\+ config"):
        average_checkpoints([new, other], tmp_path / "bad.safetensors")
