"""Meta's EnCodec 24 kHz neural codec as a backbone (no classifier: logits are None).

Each 5 s window (120,000 samples at 24 kHz) is one frame. The encoder turns it into 375 time
steps (hop 320) of a 128-d latent, which residual vector quantisation turns into codes in
[0, 1024), one per codebook and time step. Embedding, by `output`:

  "codes" (default): the window's codes flattened codebook-major (all 375 steps of codebook
      0, then codebook 1, ...), stored as float32:
      bandwidth 1.5 kbps ->  2 codebooks x 375 =   750 values
      bandwidth 3.0 kbps ->  4 codebooks x 375 = 1,500 values
  "latent": the continuous encoder output mean-pooled over the 375 steps: 128 values.

Only the encoder and the quantiser's first codebooks run (never the decoder), under
torch.inference_mode() with torch using `threads` threads, on a lean copy of the encoder.
On the CPU the convolutions take one window at a time (a window's 120,000-step activations
already outgrow the caches) and the LSTM then takes all the call's windows at once (one
matrix product per step instead of one per window). On CUDA (`device`: auto | cpu | cuda;
auto = CUDA when torch sees one) the convolutions take `batch` windows per call.
See lean_copy for the rest; codes equal the package's own `encode`.

Codes only mean something with 5 s windows (`--window-s 5`): longer windows would average
the codes of several frames.

Weights (`weights=`):
  a file path   a state dict of the 24 kHz model (e.g. encodec_24khz-d7cc33bc.th);
                weights_sha256 is that file's sha256
  None          the package's own pretrained download (torch hub cache); weights_sha256 is
                the sha256 of the cached checkpoint file
  "random"      TEST ONLY: the real architecture with random weights drawn from torch seed
                `seed`, and codebooks sampled from its encoder's outputs on seeded noise (the
                package leaves untrained codebooks at zero, which would make every code 0);
                weights_sha256 is "random-init-seed-<seed>"
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from birdemb.backbones.base import Backbone, BackboneError, CliOption
from birdemb.backbones.device import DEVICES, choose_device
from birdemb.runtime.hashing import sha256_file

CHECKPOINT_NAME = "encodec_24khz-d7cc33bc.th"
CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/encodec/v0/" + CHECKPOINT_NAME
BANDWIDTHS = (1.5, 3.0)
OUTPUTS = ("codes", "latent")
RANDOM = "random"
# Windows per convolution call on the CPU: 16 five-second windows per call cost ~1.8x per window
# what 1 does (the 120,000-step activations outgrow the caches). The LSTM takes up to LSTM_BATCH.
CPU_CONV_BATCH = 1
LSTM_BATCH = 64


def build_model(weights: str | Path | None, seed: int = 0):
    """The 24 kHz EncodecModel in eval mode, and the weights_sha256 describing its weights."""
    import warnings

    import torch
    from encodec import EncodecModel

    # the package builds its convolutions with torch's deprecated weight_norm: not the user's concern
    warnings.filterwarnings("ignore", message=".*weight_norm.*deprecated", category=FutureWarning)
    if weights == RANDOM:
        torch.manual_seed(seed)
        model = EncodecModel.encodec_model_24khz(pretrained=False)
        _randomise_codebooks(model, seed)
        return model.eval(), f"random-init-seed-{seed}"
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BackboneError(f"{path}: EnCodec checkpoint not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model = EncodecModel.encodec_model_24khz(pretrained=False)
            model.load_state_dict(state)
        except Exception as error:
            raise BackboneError(f"{path}: not a state dict of the EnCodec 24 kHz model ({error})") from None
        return model.eval(), sha256_file(path)
    try:
        model = EncodecModel.encodec_model_24khz(pretrained=True)
    except Exception as error:  # offline, or the download was refused
        raise BackboneError(
            f"could not fetch the EnCodec 24 kHz weights ({type(error).__name__}: {error}); on a machine "
            f"without internet, download {CHECKPOINT_URL} and pass `weights` <that file>"
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / CHECKPOINT_NAME
    return model.eval(), sha256_file(cached) if cached.is_file() else f"encodec-package:{CHECKPOINT_NAME}"


def _randomise_codebooks(model, seed: int) -> None:
    """Codebooks drawn from the random encoder's own outputs on seeded noise (as the package's
    k-means start would, without its training pass), layer by layer on the residuals, so that
    codes vary with the input."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    loudness = torch.tensor([0.01, 0.05, 0.2, 0.5])[:, None, None]
    noise = torch.randn(len(loudness), 1, 48_000, generator=generator) * loudness  # 2 s each
    with torch.no_grad():
        latent = model.encoder(noise)  # [4, 128, steps]
        residual = latent.transpose(1, 2).reshape(-1, latent.shape[1])
        for layer in model.quantizer.vq.layers:
            codebook = layer._codebook
            picks = torch.randint(len(residual), (codebook.codebook_size,), generator=generator)
            jitter = 0.05 * residual.std() * torch.randn(codebook.embed.shape, generator=generator)
            embed = residual[picks] + jitter
            codebook.embed.copy_(embed)
            codebook.embed_avg.copy_(embed)
            codebook.inited.fill_(1.0)
            residual = residual - embed[torch.cdist(residual, embed).argmin(dim=1)]


def lean_copy(encoder):
    """A copy of the encoder that computes the same numbers, bit for bit, with less work:
    - weight norm folded: each convolution holds, as a plain weight, the weight its (g, v) give
      (the arithmetic the package's hook repeats on every call, done once);
    - 1-wide, stride-1 convolutions called directly: their wrapper pads by (0, 0), which with
      reflect padding still copies the whole activation;
    - the ELU between a residual block's two convolutions in place (its input is not reused).
    The model itself keeps its checkpoint's state dict."""
    import copy

    import torch
    from encodec.modules.conv import SConv1d
    from encodec.modules.seanet import SEANetResnetBlock
    from torch.nn.utils import remove_weight_norm

    for module in encoder.modules():  # the hook's last weight may hang off an autograd graph: deepcopy refuses it
        if hasattr(module, "weight_g"):
            module.weight = module.weight.detach()
    lean = copy.deepcopy(encoder)
    for module in list(lean.modules()):
        if hasattr(module, "weight_g"):
            remove_weight_norm(module)
        if isinstance(module, SEANetResnetBlock) and isinstance(module.block[2], torch.nn.ELU):
            module.block[2].inplace = True  # block: ELU, conv k, ELU (on the conv's fresh output), conv 1
        for name, child in module.named_children():
            inner = getattr(child, "conv", None)
            if isinstance(child, SConv1d) and inner.conv.kernel_size == (1,) and inner.conv.stride == (1,):
                setattr(module, name, inner)  # NormConv1d: the convolution, then an identity norm
    return lean


class EnCodec(Backbone):
    name = "encodec"
    version = "24khz"
    sample_rate = 24_000
    frame_s = 5.0
    labels = None
    cli_options = (
        CliOption("--bandwidth", "bandwidth", type=float, choices=(1.5, 3.0),
                  help="encodec: codec bandwidth in kbps, 1.5 (2 codebooks, default) or 3 (4 codebooks)"),
        CliOption("--encodec-output", "output", choices=("codes", "latent"),
                  help="encodec: store the window's codes (default) or its mean encoder output (128-d)"),
        CliOption("--device", "device", choices=DEVICES,
                  help="encodec: torch device, auto (CUDA when torch sees one, default), cpu or cuda"),
    )

    def __init__(self, weights: str | Path | None = None, threads: int = 1, batch: int = 16,
                 bandwidth: float = 1.5, output: str = "codes", seed: int = 0, device: str = "auto", **_):
        import sys

        import torch

        bandwidth = float(bandwidth)
        if bandwidth not in BANDWIDTHS:
            raise BackboneError(f"EnCodec bandwidth must be one of {BANDWIDTHS} kbps, got {bandwidth:g}")
        if output not in OUTPUTS:
            raise BackboneError(f"EnCodec output must be one of {OUTPUTS}, got {output!r}")
        torch.set_num_threads(max(1, threads))
        self.model, self.weights_sha256 = build_model(weights, seed)
        self.model.set_target_bandwidth(bandwidth)
        self.device = choose_device(device)
        self.bandwidth, self.output = bandwidth, output
        self.conv_batch = max(1, batch) if self.device == "cuda" else CPU_CONV_BATCH
        self.n_codebooks = self.model.quantizer.get_num_quantizers_for_bandwidth(self.model.frame_rate, bandwidth)
        self.steps = round(self.frame_s * self.model.frame_rate)  # 375 latent steps per window
        self.embedding_dim = self.n_codebooks * self.steps if output == "codes" else self.model.encoder.dimension
        # the encoder alone, split around its LSTM (layer list: convolutions..., SLSTM, ELU, last conv)
        encoder = lean_copy(self.model.encoder)
        layers = list(encoder.model)
        cut = next(i for i, layer in enumerate(layers) if type(layer).__name__ == "SLSTM")
        self._convs = torch.nn.Sequential(*layers[:cut]).to(self.device)
        self._tail = torch.nn.Sequential(*layers[cut:]).to(self.device)
        self._codebooks = [layer.to(self.device) for layer in self.model.quantizer.vq.layers[: self.n_codebooks]]
        print(f"encodec: running on {self.device}" + ("" if self.device == "cuda" else f" with {max(1, threads)} "
              "torch thread(s)"), file=sys.stderr)

    def options(self) -> dict:
        return {"bandwidth": self.bandwidth, "output": self.output}

    def embed(self, frames: np.ndarray) -> tuple[np.ndarray, None]:
        import torch

        frames = np.ascontiguousarray(frames, dtype=np.float32)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(frames), LSTM_BATCH):
                audio = torch.from_numpy(frames[start : start + LSTM_BATCH])[:, None, :].to(self.device)
                parts.append(self._embed_batch(audio).cpu().numpy().astype(np.float32, copy=False))
        embedding = np.concatenate(parts) if parts else np.zeros((0, self.embedding_dim), np.float32)
        if embedding.shape[1] != self.embedding_dim:
            raise BackboneError(
                f"EnCodec gave {embedding.shape[1]} values per frame, expected {self.embedding_dim} "
                f"(frames of {frames.shape[1]} samples; the model needs {round(self.frame_s * self.sample_rate)})"
            )
        return embedding, None

    def encode(self, audio):
        """The encoder's latent [b, 128, steps] for audio [b, 1, samples] (model.encoder's result)."""
        import torch

        hidden = torch.cat([self._convs(audio[i : i + self.conv_batch]) for i in range(0, len(audio), self.conv_batch)])
        return self._tail(hidden)

    def codes(self, latent):
        """Codes [b, codebooks, steps] of the latent: the package's residual quantisation
        (ResidualVectorQuantization.encode), without dequantising after the last codebook."""
        import torch

        residual, codes = latent, []
        for k, layer in enumerate(self._codebooks):
            codes.append(layer.encode(residual))
            if k + 1 < len(self._codebooks):
                residual = residual - layer.decode(codes[-1])
        return torch.stack(codes, dim=1)

    def _embed_batch(self, audio):
        latent = self.encode(audio)
        if self.output == "latent":
            return latent.mean(dim=2)  # [b, 128, steps] -> [b, 128]
        codes = self.codes(latent)  # one segment: the 24 kHz model does not split
        return codes.reshape(codes.shape[0], -1).float()  # [b, codebooks, steps], codebook-major
