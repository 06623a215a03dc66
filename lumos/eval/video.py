"""Image-to-video metrics of Table 5: FVD, KVD and PIC.

What Table 5 of the paper says: Lumos-I2V (and the "w/o prior" and "w T2I prior" variants) is
evaluated zero-shot on UCF-101 and MSR-VTT with FVD and KVD (Unterthiner et al., ref. [50]) and
PIC (perceptual input conformity, DynamiCrafter, ref. [54]); FVD and KVD lower is better, PIC
higher. G.4: videos are 16 frames sampled with an interval of 3 (training; we assume the same
for evaluation). The paper is silent on: how many videos are generated and compared, which
clips / conditioning frames are taken from UCF-101 and MSR-VTT, the resolution, which I3D
weights and preprocessing, KVD's kernel and scaling, PIC's frames (whether the conditioning
frame is included) and the seeds. We fill these as follows.

Protocols (``PROTOCOLS``):

- tiny / smoke: N held-out clips of the video Shapes world's ``ucf`` and ``msrvtt`` splits (the
  two evaluation splits, `lumos.data.worlds.shapes_video`) x 16 frames (stride 3) at the data resolution
  (32 px tiny), N = 256 tiny / 64 smoke (the DAG config sets it); the conditioning frame of a
  generated video is the real clip's frame 0. FVD/KVD features: the video classifier trained in
  the DAG (`lumos.components.video_net`, kind ``video_net``), on frames at their native size.
  PIC: the DAG's DINO-style encoder (kind ``encoder``), cosine similarity of L2-normalised CLS.
- paper: the commonly used zero-shot I2V protocol (as in DynamiCrafter / common FVD code):
  2048 videos x 16 frames, I3D (Kinetics-400, the StyleGAN-V TorchScript port of the tf.hub
  model FVD was defined with) on frames resized to 224 x 224, 400-d pre-softmax features; PIC
  with DreamSim. These are our assumptions where the paper is silent, not the paper's statement.

Small N caveat: FVD is biased upward at small N (the covariance of N < feature_dim samples is
rank-deficient), so numbers are comparable only at equal N and feature network; KVD's unbiased
estimator does not have this bias (it can be slightly negative for equal distributions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lumos.components.loading import MissingWeightsError
from lumos.eval.fid import frechet_distance, statistics

PROTOCOLS = {
    "smoke": {"videos": 64, "frames": 16, "stride": 3, "resolution": "data (32 px)", "extractor": "video_net",
              "pic": "encoder"},
    "tiny": {"videos": 256, "frames": 16, "stride": 3, "resolution": "data (32 px)", "extractor": "video_net",
             "pic": "encoder"},
    "paper": {"videos": 2048, "frames": 16, "stride": 3, "resolution": 224, "extractor": "i3d", "pic": "dreamsim"},
}

I3D_INPUT_SIZE = 224
# The StyleGAN-V I3D TorchScript's call convention (verified by reading universome/stylegan-v
# src/metrics/{frechet_video_distance,metric_utils}.py and the widely copied
# common_metrics_on_video_quality fvd code): input (B, 3, T, H, W); `rescale=True` maps uint8
# [0, 255] to [-1, 1] inside the model (StyleGAN-V feeds uint8 so), `resize=True` resizes to
# 224 inside it; `return_features=True` returns the 400-d pre-softmax features. We resize to
# 224 ourselves (bilinear, shorter side then centre crop, as common_metrics does), scale to
# [-1, 1] and call with rescale=False, resize=False.
I3D_KWARGS = {"rescale": False, "resize": False, "return_features": True}


# -----------------------------------------------------------------------------
# Feature extractors
# -----------------------------------------------------------------------------


class VideoExtractor:
    """A video feature network: ``extractor(uint8 videos (B, T, H, W, 3)) -> float32 (B, D)``."""

    def __init__(self, fn, name: str, device="cpu"):
        self.fn, self.name, self.device = fn, name, device

    @torch.no_grad()
    def __call__(self, videos) -> np.ndarray:
        return self.fn(videos).float().cpu().numpy()


def i3d_preprocess(videos, size: int = I3D_INPUT_SIZE, device="cpu") -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, 3, T, size, size) in [-1, 1]: each frame's shorter side
    resized to `size` (bilinear), then centre-cropped."""
    x = torch.as_tensor(np.asarray(videos)).to(device).float() / 255.0
    b, t, h, w, c = x.shape
    x = x.reshape(b * t, h, w, c).permute(0, 3, 1, 2)
    s = size / min(h, w)
    th, tw = max(size, round(h * s)), max(size, round(w * s))
    if (th, tw) != (h, w):
        x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
    top, left = (th - size) // 2, (tw - size) // 2
    x = x[..., top : top + size, left : left + size]
    return (x * 2 - 1).reshape(b, t, c, size, size).permute(0, 2, 1, 3, 4).contiguous()


def load_video_extractor(spec: dict, device="cpu") -> VideoExtractor:
    """The FVD/KVD feature network of a spec:

    - ``{"kind": "video_net", "pretrained": folder}``: the DAG-trained video classifier (tiny);
      its penultimate features, on frames at their native size;
    - ``{"kind": "i3d", "pretrained": "path/i3d_torchscript.pt"}``: the I3D TorchScript widely
      used for FVD (StyleGAN-V's), see :data:`I3D_KWARGS`.

    A missing file is a `MissingWeightsError` naming the path and the config key
    (``components.video_net.pretrained``; for I3D ``spec["config_key"]``, default
    ``components.i3d.pretrained``)."""
    kind = spec.get("kind", "video_net")
    if kind == "video_net":
        from lumos.components.video_net import load_video_net

        net = load_video_net({"pretrained": spec["pretrained"]}, device)
        return VideoExtractor(net.embed, "video classifier (trained in the DAG)", device)
    if kind == "i3d":
        key = spec.get("config_key", "components.i3d.pretrained")
        path = Path(str(spec.get("pretrained", ""))).expanduser()
        if not spec.get("pretrained") or not path.is_file():
            raise MissingWeightsError(
                f"missing I3D TorchScript for FVD: '{path}' is not a file. Place 'i3d_torchscript.pt' "
                f"(the StyleGAN-V / common FVD I3D, Kinetics-400) there or point config key '{key}' at it "
                f"(nothing is downloaded)."
            )
        model = torch.jit.load(str(path), map_location=device).eval()

        def run(videos):
            return model(i3d_preprocess(videos, device=device), **I3D_KWARGS)

        return VideoExtractor(run, "I3D (Kinetics-400, StyleGAN-V TorchScript)", device)
    raise ValueError(f"unknown video extractor kind '{kind}': use 'video_net' or 'i3d'")


def _as_video(item) -> np.ndarray:
    """A video from an iterator item: an array (T, H, W, 3) or a tuple whose first entry is one
    (as `shapes_video.read_clips` yields)."""
    return np.asarray(item[0] if isinstance(item, tuple) else item)


def video_features(videos_iter, extractor, batch_size: int = 32) -> np.ndarray:
    """Features (n, D) of the uint8 videos an iterable yields (arrays (T, H, W, 3) or
    ``(frames, record)`` pairs), streamed `batch_size` videos at a time: memory holds one batch
    of videos plus the features. An array (n, T, H, W, 3) works as the iterable too."""
    feats, batch = [], []
    for item in videos_iter:
        batch.append(_as_video(item))
        if len(batch) == batch_size:
            feats.append(np.asarray(extractor(np.stack(batch)), np.float32))
            batch = []
    if batch:
        feats.append(np.asarray(extractor(np.stack(batch)), np.float32))
    if not feats:
        raise ValueError("video_features: no videos")
    return np.concatenate(feats)


# -----------------------------------------------------------------------------
# FVD and KVD
# -----------------------------------------------------------------------------


def fvd(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet video distance: the Fréchet distance of Gaussian fits (mean, covariance) of two
    feature sets (`lumos.eval.fid.statistics` and clean-fid's `frechet_distance`)."""
    return frechet_distance(statistics(np.asarray(feats_a)), statistics(np.asarray(feats_b)))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID/KVD's kernel k(x, y) = (x . y / d + 1) ** 3, d the feature dimension."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of samples x (m, d) and y (n, d) under :func:`polynomial_kernel` (the
    diagonals of k(x, x) and k(y, y) left out)."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("unbiased MMD needs at least 2 samples on each side")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kvd(feats_a: np.ndarray, feats_b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel video distance ``(mean, std)``: the unbiased MMD^2 (:func:`mmd2_unbiased`, the
    polynomial kernel (x . y / d + 1)^3 of KID/KVD) on `subsets` random subsets of
    ``min(subset_size, len(a), len(b))`` videos drawn without replacement from each set (seeded),
    mean and std over subsets. Scaling: the raw MMD^2, NOT multiplied by 1000 (some papers report
    KVD x 1000; Table 5 does not say which; tables name the convention)."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    vals = [mmd2_unbiased(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
            for _ in range(subsets)]
    return float(np.mean(vals)), float(np.std(vals))


# -----------------------------------------------------------------------------
# PIC
# -----------------------------------------------------------------------------


class EncoderSimilarity:
    """Image similarity from a vision encoder (`lumos.components.encoders.VisionEncoder`: uint8
    images -> (CLS, patch tokens)): the cosine of the L2-normalised CLS tokens."""

    def __init__(self, encoder, name: str = "encoder CLS cosine"):
        self.encoder, self.name = encoder, name

    def embed(self, images) -> torch.Tensor:
        cls, _ = self.encoder(np.asarray(images))
        return F.normalize(cls.float(), dim=-1)

    @torch.no_grad()
    def __call__(self, a, b) -> np.ndarray:
        """Similarities (N,) of uint8 image pairs a[i], b[i] (N, H, W, 3)."""
        return (self.embed(a) * self.embed(b)).sum(-1).cpu().numpy()


class DreamSimSimilarity:
    """1 - DreamSim distance (DynamiCrafter's PIC). DreamSim takes RGB in [0, 1] at 224 x 224."""

    def __init__(self, model, device="cpu"):
        self.model, self.device, self.name = model, device, "1 - DreamSim distance"

    def _prep(self, images) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)

    @torch.no_grad()
    def __call__(self, a, b) -> np.ndarray:
        return (1.0 - self.model(self._prep(a), self._prep(b)).reshape(-1)).float().cpu().numpy()


def load_pic_model(spec: dict, device="cpu"):
    """The PIC similarity of a spec:

    - ``{"kind": "encoder", "name": "dino", ...}``: the DAG's vision encoder (the rest of the spec
      is its `components.<name>` block, for `load_encoder`): cosine of L2-normalised CLS (tiny);
    - ``{"kind": "dreamsim", "pretrained": cache_dir}``: DreamSim (paper): needs the `dreamsim`
      package and its weights already in `cache_dir` (nothing is installed or downloaded here).
      The call ``dreamsim.dreamsim(pretrained=True, device=..., cache_dir=...)`` and the weight
      layout it expects in `cache_dir` are the package's documented API, unverified here (the
      package is not installed in this environment)."""
    kind = spec.get("kind", "encoder")
    if kind == "encoder":
        from lumos.components.encoders import load_encoder

        name = spec.get("name", "dino")
        enc_spec = {k: v for k, v in spec.items() if k not in ("kind", "name")}
        return EncoderSimilarity(load_encoder(enc_spec, name, device), f"{name} CLS cosine")
    if kind == "dreamsim":
        key = spec.get("config_key", "components.dreamsim.pretrained")
        path = Path(str(spec.get("pretrained", ""))).expanduser()
        try:
            import dreamsim  # noqa: F401
        except ImportError as err:
            raise MissingWeightsError(
                f"PIC at paper scale needs the 'dreamsim' package (pip install dreamsim), which is not "
                f"installed; its weights are expected in '{path}' (config key '{key}')."
            ) from err
        if not spec.get("pretrained") or not path.exists():
            raise MissingWeightsError(
                f"missing DreamSim weights for PIC: '{path}' does not exist. Place DreamSim's cache "
                f"folder there or point config key '{key}' at it (nothing is downloaded)."
            )
        from dreamsim import dreamsim as build

        model, _ = build(pretrained=True, device=str(device), cache_dir=str(path))
        return DreamSimSimilarity(model.eval(), device)
    raise ValueError(f"unknown PIC model kind '{kind}': use 'encoder' or 'dreamsim'")


def pic(first_frames, videos, encoder, start: int = 1) -> float:
    """Perceptual input conformity: the mean over videos, and over each video's frames
    ``start..T-1``, of the similarity between the input (conditioning) frame and the frame.

    `first_frames`: uint8 (N, H, W, 3) (or an iterable of frames), the images the videos were
    generated from; `videos`: an iterable of N uint8 videos (T, H, W, 3) (or ``(frames, record)``
    pairs), consumed one at a time. `encoder`: a similarity from :func:`load_pic_model`, or a
    bare vision encoder (uint8 images -> (CLS, patch)), used as CLS cosine.

    `start` = 1 by default: frame 0 of a Lumos-I2V output is the conditioning frame itself (H.4's
    mask strategy keeps it unmasked), which would score 1 by construction. Tiny scale: cosine of
    L2-normalised CLS (in [-1, 1]; 1 for identical frames). Paper scale (DynamiCrafter's
    definition): 1 - DreamSim distance."""
    sim = encoder if isinstance(encoder, (EncoderSimilarity, DreamSimSimilarity)) else EncoderSimilarity(encoder)
    per_video = []
    firsts = iter(first_frames)
    for item in videos:
        video = _as_video(item)
        try:
            first = np.asarray(next(firsts))
        except StopIteration:
            raise ValueError("pic: fewer first frames than videos") from None
        frames = video[start:]
        if not len(frames):
            raise ValueError(f"pic: a video of {len(video)} frames has none from frame {start}")
        per_video.append(float(np.mean(sim(np.repeat(first[None], len(frames), 0), frames))))
    if next(firsts, None) is not None:
        raise ValueError("pic: more first frames than videos")
    if not per_video:
        raise ValueError("pic: no videos")
    return float(np.mean(per_video))


# -----------------------------------------------------------------------------
# Table 5's measurements: generated clips against their split, and the real-clip sanity rows
# -----------------------------------------------------------------------------


def extractor_from_config(video_net: dict, device="cpu") -> VideoExtractor:
    """The FVD network of config block `components.video_net` (kind video_net or i3d)."""
    return load_video_extractor({**video_net, "config_key": "components.video_net.pretrained"}, device)


def pic_from_config(pic_spec: dict, components: dict, device="cpu"):
    """PIC's similarity from config block `components.pic`: `{kind: encoder, encoder: <name>}`
    (the DAG's encoder, `components.<name>`) or `{kind: dreamsim, pretrained: <folder>}`."""
    if pic_spec.get("kind", "encoder") == "encoder":
        name = pic_spec.get("encoder", "dino")
        return load_pic_model({"kind": "encoder", "name": name, **components[f"components.{name}"]}, device)
    return load_pic_model({**pic_spec, "config_key": "components.pic.pretrained"}, device)


def _strips(samples_dir, frames: int, limit: int | None):
    """Generated videos (T, H, W, 3) from a folder of PNG strips, in name order."""
    from PIL import Image

    from lumos.data.worlds.shapes_video import split_frames

    for path in sorted(Path(samples_dir).glob("*.png"))[:limit]:
        with Image.open(path) as img:
            yield split_frames(np.asarray(img.convert("RGB")), frames)


def _one_pass(pairs, ext: VideoExtractor, sim, batch_size: int = 32):
    """One pass over (first frame, video A, video B) triples: the features of the A and B videos
    (batched as `video_features` batches them) and the PIC of each B video to its first frame
    (`pic`, per video). Every clip is read once, however many measurements it feeds."""
    feats_a, feats_b, pics, batch_a, batch_b = [], [], [], [], []

    def flush():
        feats_a.append(np.asarray(ext(np.stack(batch_a)), np.float32))
        feats_b.append(np.asarray(ext(np.stack(batch_b)), np.float32))
        batch_a.clear()
        batch_b.clear()

    for first, a, b in pairs:
        pics.append(pic([first], [b], sim))
        batch_a.append(a)
        batch_b.append(b)
        if len(batch_a) == batch_size:
            flush()
    if batch_a:
        flush()
    if not feats_a:
        raise ValueError("no videos")
    return np.concatenate(feats_a), np.concatenate(feats_b), np.array(pics)


def clip_metrics(samples_dir: str, data_dir: str, video_net: dict, pic_spec: dict, components: dict,
                 limit: int | None = None, subsets: int = 10, subset_size: int = 64, seed: int = 0,
                 device="cpu") -> dict:
    """FVD and KVD of the generated clips (PNG strips named by clip index) against the real clips
    of their split, and PIC of the generated clips to the real first frames they were generated
    from. Every real clip (up to `limit`) must have its generated clip: a missing one stops this."""
    from lumos.data.worlds.shapes_video import read_clips
    from lumos.data.shards import split_index

    n = min(limit or split_index(data_dir)["n"], split_index(data_dir)["n"])
    made = len(sorted(Path(samples_dir).glob("*.png"))[:n])
    if made != n:
        raise ValueError(f"{samples_dir} holds {made} generated clips; the split's first {n} clips need one each")
    frames = split_index(data_dir).get("frames", 16)
    ext = extractor_from_config(video_net, device)
    sim = pic_from_config(pic_spec, components, device)
    pairs = ((clip[0], clip, gen) for (clip, _), gen in zip(read_clips(data_dir, n), _strips(samples_dir, frames, n)))
    real, gen, pics = _one_pass(pairs, ext, sim)
    mean, std = kvd(real, gen, subsets, subset_size, seed)
    return {"fvd": fvd(real, gen), "kvd": mean, "kvd_std": std, "pic": float(pics.mean()),
            "clips": n, "extractor": ext.name, "pic_model": sim.name}


def real_sanity_metrics(data_dir: str, video_net: dict, pic_spec: dict, components: dict, limit: int | None = None,
                        subsets: int = 10, subset_size: int = 64, seed: int = 0, device="cpu") -> dict:
    """The sanity rows on real clips alone: FVD / KVD between the split's two halves (even and odd
    clips: the floor a perfect generator reaches at this N) and between the clips and the same
    clips with their frames shuffled (a random permutation per clip, seeded: what the metric says
    of the right frames in the wrong order); PIC of the real clips and of the shuffled ones to
    their own first frame."""
    from lumos.data.worlds.shapes_video import read_clips

    ext = extractor_from_config(video_net, device)
    sim = pic_from_config(pic_spec, components, device)
    rng = np.random.default_rng(seed)
    real_pics = []

    def triples():
        for clip, _ in read_clips(data_dir, limit):
            real_pics.append(pic([clip[0]], [clip], sim))
            yield clip[0], clip, clip[rng.permutation(len(clip))]

    real, mixed, mixed_pics = _one_pass(triples(), ext, sim)
    halves_kvd = kvd(real[0::2], real[1::2], subsets, subset_size // 2, seed)
    shuffled_kvd = kvd(real, mixed, subsets, subset_size, seed)
    return {"fvd_halves": fvd(real[0::2], real[1::2]), "kvd_halves": halves_kvd[0],
            "fvd_shuffled": fvd(real, mixed), "kvd_shuffled": shuffled_kvd[0],
            "pic_halves": float(np.mean(real_pics)), "pic_shuffled": float(mixed_pics.mean()),
            "clips": int(len(real)), "extractor": ext.name, "pic_model": sim.name}
