"""Chest X-ray inputs (appendix A.1.5): JPEG -> resized -> cropped, normalised image.

`LoadImages` is the Ray Data map stage that decodes each row's image. For scoring (validation,
test, embeddings) it gives the model's input: resized, centre-cropped, normalised ("cxr.image",
float32, 3 x crop x crop; zeros where a row has no image). For training it stops before the
random part: the resized image's central square ("cxr.resized", uint8, 3 x resize x resize, and
"cxr.has_image"), so a split decoded once can be held for every epoch (`training.pretrain.datasets`)
and `EpochAugment` draws the augmentations in the worker, anew each epoch.

Each stay's draw comes from its own seed, (run seed, epoch, stay id): the same in every run, after a
resume and on any number of workers, and a different draw each epoch, as augmentation means.
The random crops come from the resized image's central square (a chest X-ray is near square),
where a decode-per-epoch pipeline would crop the whole resized image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LoadImages:
    """Ray Data map stage: "cxr.path" -> "cxr.image" (scoring) or "cxr.resized" + "cxr.has_image"
    (`train`: for `EpochAugment`)."""

    def __init__(self, image_root: str, config, train: bool):
        import torch
        from torchvision.transforms import v2

        self.root, self.train = Path(image_root), train
        self.size = config.image_resize if train else config.image_crop
        crop = [v2.CenterCrop(config.image_resize)] if train else [v2.CenterCrop(config.image_crop),
                                                                   v2.ToDtype(torch.float32, scale=True),
                                                                   v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        self.transform = v2.Compose([v2.Resize(config.image_resize), *crop])

    def __call__(self, batch: dict) -> dict:
        from PIL import Image
        from torchvision.transforms.v2.functional import pil_to_tensor

        paths = batch.pop("cxr.path")
        images = np.zeros((len(paths), 3, self.size, self.size), np.uint8 if self.train else np.float32)
        for i, relative in enumerate(paths):
            if relative:  # decoded by Pillow: torchvision 0.29 deprecates its own image decoding
                with Image.open(self.root / relative) as image:
                    images[i] = self.transform(pil_to_tensor(image.convert("RGB"))).numpy()
        if self.train:
            batch["cxr.resized"], batch["cxr.has_image"] = images, np.array([bool(p) for p in paths])
        else:
            batch["cxr.image"] = images
        return batch


class EpochAugment:
    """A training batch's "cxr.resized" -> "cxr.image": each stay's image augmented (random resized
    crop, horizontal flip, affine) with the draw of (seed, epoch, stay id), then normalised; zeros
    where the stay has no image. Leaves the caller's random stream (dropout's) as it was."""

    def __init__(self, config, seed: int):
        import torch
        from torchvision.transforms import v2

        self.seed, self.crop = seed, config.image_crop
        self.transform = v2.Compose([
            v2.RandomResizedCrop(config.image_crop, scale=config.augment_crop_scale),
            v2.RandomHorizontalFlip(config.augment_flip_p),
            v2.RandomAffine(config.augment_rotation_degrees, translate=(config.augment_translate,) * 2,
                            scale=config.augment_scale),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __call__(self, batch: dict, epoch: int) -> dict:
        import torch

        if "cxr.resized" not in batch:
            return batch
        resized, has_image = batch.pop("cxr.resized"), batch.pop("cxr.has_image")
        images = torch.zeros(len(resized), 3, self.crop, self.crop)
        with torch.random.fork_rng(devices=[]):  # torchvision draws from the global generator
            for i, stay in enumerate(batch["stay_id"].tolist()):
                if has_image[i]:
                    torch.manual_seed(int(np.random.SeedSequence([self.seed, epoch, int(stay)]).generate_state(1)[0]))
                    images[i] = self.transform(resized[i])
        batch["cxr.image"] = images
        return batch
