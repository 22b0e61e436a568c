"""Chest X-ray inputs (`data.images`): the decode stage's two outputs, and the training images'
augmentations, drawn anew each epoch from each stay's own seed."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from clintraj.data.images import EpochAugment, LoadImages
from clintraj.data.stay_inputs import InputConfig, with_map_stages

CONFIG = InputConfig(image_resize=72, image_crop=64)


def _batch(stays, has_image, seed=0):
    generator = torch.Generator().manual_seed(seed)
    resized = torch.randint(0, 256, (len(stays), 3, 72, 72), dtype=torch.uint8, generator=generator)
    return {"stay_id": torch.tensor(stays), "cxr.resized": resized, "cxr.has_image": torch.tensor(has_image)}


def test_each_stay_gets_a_new_draw_each_epoch_the_same_in_every_run_and_batch():
    augment, batch = EpochAugment(CONFIG, seed=0), _batch([10, 11, 12, 13], [True, True, False, True])
    before = torch.get_rng_state()
    first = augment(dict(batch), epoch=0)["cxr.image"]
    assert torch.equal(torch.get_rng_state(), before)  # dropout's stream is left as it was
    assert first.shape == (4, 3, 64, 64) and first.dtype == torch.float32
    assert not first[2].any()  # no image: zeros, as a scored stay without one
    assert torch.equal(first, EpochAugment(CONFIG, seed=0)(dict(batch), epoch=0)["cxr.image"])  # every run
    again = augment(dict(batch), epoch=1)["cxr.image"]
    for row in (0, 1, 3):
        assert not torch.equal(first[row], again[row])  # a new draw each epoch
    assert not torch.equal(first[0], EpochAugment(CONFIG, seed=1)(dict(batch), epoch=0)["cxr.image"][0])
    # a stay's draw is its own: the same alone (another worker's shard, another batch) as beside others
    alone = {key: value[3:] for key, value in batch.items()}
    assert torch.equal(augment(alone, epoch=0)["cxr.image"][0], first[3])


def test_a_batch_without_training_images_passes_unchanged():
    batch = {"stay_id": torch.tensor([1]), "present": torch.ones(1, 2, dtype=torch.bool)}
    assert EpochAugment(CONFIG, seed=0)(dict(batch), epoch=3) == batch


def test_the_decode_stage_gives_scored_crops_and_training_squares(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.jpg")
    paths = np.array(["a.jpg", ""], dtype=object)
    scored = LoadImages(str(tmp_path), CONFIG, train=False)({"cxr.path": paths.copy()})
    assert scored["cxr.image"].shape == (2, 3, 64, 64) and scored["cxr.image"].dtype == np.float32
    assert not scored["cxr.image"][1].any() and scored["cxr.image"][0].std() > 0.1
    training = LoadImages(str(tmp_path), CONFIG, train=True)({"cxr.path": paths.copy()})
    assert training["cxr.resized"].shape == (2, 3, 72, 72) and training["cxr.resized"].dtype == np.uint8
    assert training["cxr.has_image"].tolist() == [True, False] and "cxr.image" not in training
    # the scored crop is the training square's centre, normalised: the same decode and resize
    centre = training["cxr.resized"][0, :, 4:68, 4:68] / 255.0
    mean, std = np.array([0.485, 0.456, 0.406])[:, None, None], np.array([0.229, 0.224, 0.225])[:, None, None]
    assert np.allclose(scored["cxr.image"][0], (centre - mean) / std, atol=1e-5)


class RecordedDataset:
    """Stands in for a Ray Dataset: records which of its methods `with_map_stages` calls, in order."""

    def __init__(self, columns: list[str]):
        self._columns, self.calls = columns, []

    def columns(self) -> list[str]:
        self.calls.append("columns")
        return self._columns

    def map_batches(self, fn, **options):
        self.calls.append(fn.__name__)
        return self


def test_the_map_stages_are_chosen_from_the_input_columns_without_running_a_stage():
    """A dataset's columns after a map stage are known only by running it (Ray starts its actors and
    loads a tokenizer for one row): the columns are asked of the input alone."""
    meta = {"modality_kinds": {"radiology_note": "text", "cxr": "image"}, "text_model": "bert",
            "image_root": "/images"}
    rows = RecordedDataset(["stay_id", "radiology_note.text", "cxr.path"])
    assert with_map_stages(rows, meta, CONFIG, augment=False) is rows
    stages = rows.calls.index("TokenizeNotes")
    assert rows.calls[stages:] == ["TokenizeNotes", "LoadImages"] and "columns" in rows.calls[:stages]
