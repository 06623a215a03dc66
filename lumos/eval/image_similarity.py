"""Image similarity: PSNR, SSIM and LPIPS of generated images against their ground truth (the
novel-view metrics of Table 4 and Figure 5: a generated view against its render).

- PSNR: `skimage.metrics.peak_signal_noise_ratio` on uint8 RGB, data range 255, over all pixels
  and channels.
- SSIM: `skimage.metrics.structural_similarity` on uint8 RGB, data range 255, a 7 x 7 uniform
  window (scikit-image's default), computed per colour channel and averaged (`channel_axis=-1`).
- LPIPS: the `lpips` package, version 0.1, AlexNet trunk with its learned linear heads, on RGB
  scaled to [-1, 1]. The package ships the linear heads; the AlexNet trunk is torchvision's
  ImageNet checkpoint `alexnet-owt-7be5be79.pth`, which torchvision downloads on first use. Nothing
  is downloaded here: the trunk is read from a path (default: torch's hub cache, where
  torchvision would have put it), and where that file is missing LPIPS is not computed and the
  tables say so, rather than reporting a number from an untrained trunk.

Every function takes and returns numpy; images are (N, H, W, 3) uint8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's IMAGENET1K_V1 AlexNet checkpoint
SSIM_WINDOW = 7


def default_alexnet_path() -> Path:
    """Where torchvision keeps the AlexNet checkpoint: `<torch hub dir>/checkpoints/<file>`."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def psnr(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB (inf for identical images), data range 255."""
    from skimage.metrics import peak_signal_noise_ratio

    return np.array([peak_signal_noise_ratio(g, p, data_range=255) for g, p in zip(gt, pred)])


def ssim(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-image SSIM (7 x 7 uniform window, data range 255, mean over RGB channels)."""
    from skimage.metrics import structural_similarity

    return np.array([structural_similarity(g, p, data_range=255, channel_axis=-1, win_size=SSIM_WINDOW)
                     for g, p in zip(gt, pred)])


class LPIPS:
    """LPIPS (AlexNet, v0.1) with the trunk read from `alexnet_path` (see module docstring).

    `LPIPS.load(path)` returns the metric, or None with the reason when the trunk is not on disk.
    """

    def __init__(self, alexnet_path, device="cpu"):
        import lpips
        import torch
        import torchvision

        self.device = device
        self.model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, pretrained=True, verbose=False)
        trunk = torchvision.models.alexnet()
        trunk.load_state_dict(torch.load(alexnet_path, map_location="cpu", weights_only=True))
        # lpips splits AlexNet's `features` into slices whose children keep their index as name
        for piece in (self.model.net.slice1, self.model.net.slice2, self.model.net.slice3, self.model.net.slice4,
                      self.model.net.slice5):
            for name, module in piece.named_children():
                module.load_state_dict(trunk.features[int(name)].state_dict())
        self.model = self.model.to(device).eval()

    @classmethod
    def load(cls, alexnet_path=None, device="cpu") -> tuple["LPIPS | None", str]:
        """(metric, "") or (None, why): the reason names the file and where to place it."""
        path = Path(alexnet_path) if alexnet_path else default_alexnet_path()
        if not path.is_file():
            return None, (f"AlexNet weights not on disk: place torchvision's {ALEXNET_FILE} at {path} "
                          "(or set nvs.eval.lpips_alexnet)")
        return cls(path, device), ""

    def __call__(self, gt: np.ndarray, pred: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Per-image LPIPS distance."""
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(gt), batch_size):
                a, b = (torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size])).permute(0, 3, 1, 2)
                        .float().div(127.5).sub(1).to(self.device) for x in (gt, pred))
                out.append(self.model(a, b).flatten().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)


def view_metrics(gt: np.ndarray, pred: np.ndarray, lpips_metric: LPIPS | None = None) -> dict[str, np.ndarray]:
    """Per-image PSNR, SSIM and (when the metric is loaded) LPIPS of `pred` against `gt`."""
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and generated {pred.shape} views differ in shape")
    out = {"psnr": psnr(gt, pred), "ssim": ssim(gt, pred)}
    if lpips_metric is not None:
        out["lpips"] = lpips_metric(gt, pred)
    return out
