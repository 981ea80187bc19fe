"""bench/profile_joint_step.py: its per-component split of a training step is complete.

The profile is a script (timings are not tested); what is tested is that the split adds
up, so a table it prints can be trusted: the backward segments tile the whole backward,
every hooked component is timed once per step (nothing carries over), and a model whose encoder input layer
does not pass a gradient boundary is refused instead of printing a wrong split.
"""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import profile_joint_step as pjs  # noqa: E402

SMOKE = REPO / "egs2/mini_noisy/asr_with_enhancement/conf/tuning/train_enh_asr_smoke.yaml"


@pytest.fixture(scope="module")
def timed_step():
    model, optimizer = pjs.build(str(SMOKE), vocab=29)
    batch = pjs.make_batch(batch=2, seconds=0.5, tokens=5, vocab=29)
    timer = pjs.StepTimer(model)
    timer.step(model, optimizer, batch)  # warm-up
    return timer, model, optimizer, batch


def test_components_tile_the_step(timed_step):
    """Forward components (with the remainder row) + backward segments + optimizer = the
    step, with every part >= 0: the backward boundaries fall inside the backward (sorted,
    they cut it into consecutive segments) and no forward component is counted twice. The
    fixture has already run a step, so this also checks that nothing carries over from one
    step to the next (carried-over times would make the remainder negative)."""
    timer, model, optimizer, batch = timed_step
    result = timer.step(model, optimizer, batch)
    step = result.pop("step")
    assert set(pjs.BACKWARD_SEGMENTS) <= set(result)
    assert "forward: encoder input layer" in result and "optimizer step" in result
    assert sum(result.values()) == pytest.approx(step, rel=1e-3)
    assert all(result[name] >= 0 for name in pjs.BACKWARD_SEGMENTS)
    # The remainder row is >= 0 only if no forward component is counted twice (the input
    # layer runs inside the encoder's forward and is subtracted from the blocks).
    assert all(v >= 0 for k, v in result.items() if k.startswith("forward: "))


def test_missing_gradient_boundary_is_refused(timed_step):
    """Without a gradient into the ASR back-end (SE output detached) the boundaries never
    fire: the step raises instead of attributing the whole backward to one segment."""
    timer, model, optimizer, batch = timed_step
    original = model.s2t_model.forward

    def detached(speech, *args, **kwargs):
        return original(speech.detach(), *args, **kwargs)

    model.s2t_model.forward = detached
    try:
        with pytest.raises(RuntimeError, match="backward boundaries"):
            timer.step(model, optimizer, batch)
    finally:
        model.s2t_model.forward = original
