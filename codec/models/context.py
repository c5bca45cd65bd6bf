"""Channel groups × checkerboard context on top of the gained hyperprior (kind ``gain-ctx``, issue 13).

The latent's channels are split into groups (``GROUPS`` for M=192). Each group is coded in two
checkerboard passes (He et al., CVPR 2021; channel groups as in ELIC, He et al., CVPR 2022): first
the anchors, then the non-anchors. Mean and scale of a group come from the hyperprior's prediction
plus a correction computed from the groups already decoded (channel context) and, for non-anchors,
the group's decoded anchors (spatial context). The correction network's last layer starts at zero,
so a ``ContextModel`` loaded from hyperprior weights codes exactly as the hyperprior does.

Why not CompressAI's ``ChannelGroupsLatentCodec``/``CheckerboardLatentCodec`` as a whole: their
coding paths are float networks (a flipped scale index on another machine desynchronizes the rANS
stream), one stream per pass, and their checkerboard training reproduction fell short of the paper
(CompressAI PR #243). We reuse ``CheckerboardMaskedConv2d`` and the anchor layout ("even" parity:
anchors where row + column is even), and run every context network as an ``ExactNetwork``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from compressai.layers import CheckerboardMaskedConv2d
from torch import Tensor, nn

from ..core import engine
from ..core.exact import ACT_BITS, ExactNetwork, floor_shift
from ..core.tensors import ste_round
from .base import Streams, register
from .hyperprior import Arch, GainHyperprior, HyperpriorCoder, Latents

#: Channel groups of the 192-channel latent (ELIC's uneven split: small groups first, where the
#: channel context has the least to go on and the latent carries the most energy).
GROUPS = (16, 16, 32, 64, 64)
GROUPS_OF = 192
CHANNEL_HIDDEN = 64
SPATIAL_KERNEL = 5
LEAKY_SLOPE = 0.01


def groups_for(M: int) -> tuple[int, ...]:
    """``GROUPS`` scaled to an M-channel latent (tests use small networks)."""
    if (M * GROUPS[0]) % GROUPS_OF:
        raise ValueError(f"latent of {M} channels cannot be split in the proportions {GROUPS}")
    return tuple(g * M // GROUPS_OF for g in GROUPS)


def anchor_mask(h: int, w: int) -> Tensor:
    """(h, w) bool, True at anchors: row + column even (CompressAI's ``anchor_parity="even"``)."""
    return (torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == 0


class GroupContext(nn.Module):
    """Parameter correction of one group: spatial context, channel context, pointwise fuse."""

    def __init__(self, C: int, P: int):
        super().__init__()
        self.spatial = CheckerboardMaskedConv2d(C, C, SPATIAL_KERNEL, padding=SPATIAL_KERNEL // 2)
        self.channel = (
            nn.Sequential(
                nn.Conv2d(P, CHANNEL_HIDDEN, 3, padding=1),
                nn.LeakyReLU(LEAKY_SLOPE),
                nn.Conv2d(CHANNEL_HIDDEN, C, 3, padding=1),
            )
            if P
            else None
        )
        n_in = 2 * C + C + (C if P else 0)
        self.fuse = nn.Sequential(nn.Conv2d(n_in, 3 * C, 1), nn.LeakyReLU(LEAKY_SLOPE), nn.Conv2d(3 * C, 2 * C, 1))
        nn.init.zeros_(self.fuse[-1].weight)
        nn.init.zeros_(self.fuse[-1].bias)

    def correction(self, hyper: Tensor, spatial: Tensor, channel: Tensor | None) -> tuple[Tensor, Tensor]:
        """(Δσ, Δμ) from the group's hyper params [σ_h, μ_h], spatial and channel contexts."""
        parts = [hyper, spatial] + ([channel] if channel is not None else [])
        return self.fuse(torch.cat(parts, 1)).chunk(2, 1)


@dataclass
class ExactGroup:
    """One group's ``GroupContext`` as exact networks (no channel network for the first group)."""

    spatial: ExactNetwork
    channel: ExactNetwork | None
    fuse: ExactNetwork


#: code(group channels, pass columns, indexes, gained means) -> symbols; all (B, C, n): the group's
#: values in the columns of this pass in the ``PassLayout`` (its n positions, in stream order).
CodeStep = Callable[[slice, slice, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class PassLayout:
    """The (h, w) latent's flat positions reordered pass by pass (anchors, then the rest; raster order
    within each, the stream's order), so that a pass is a slice of columns, not a gather."""

    order: Tensor  # (h·w,) flat positions, anchors first
    anchors: int  # how many

    @classmethod
    def of(cls, h: int, w: int) -> PassLayout:
        flat = anchor_mask(h, w).reshape(-1)
        return cls(torch.cat([flat.nonzero()[:, 0], (~flat).nonzero()[:, 0]]), int(flat.sum()))

    @property
    def passes(self) -> tuple[slice, slice]:
        return slice(0, self.anchors), slice(self.anchors, None)

    def positions(self, part: slice) -> Tensor:
        """The flat image positions of a pass."""
        return self.order[part]

    def columns(self, t: Tensor) -> Tensor:
        """(B, C, h, w) or (B, C, h·w) image values → (B, C, h·w) in pass order."""
        return t.flatten(2)[:, :, self.order]

    def image(self, t: Tensor, h: int, w: int) -> Tensor:
        """The inverse of ``columns``: (B, C, h·w) in pass order → (B, C, h, w)."""
        out = torch.empty_like(t)
        out[:, :, self.order] = t
        return out.reshape(*t.shape[:2], h, w)


class ContextCoder(HyperpriorCoder):
    """The exact entropy path of a ``ContextModel``: the hyperprior's, plus the context networks.

    Integer-exact like the hyper-synthesis: the decoded gained latent (symbol + gained mean) has an
    exact fixed point ``ExactNetwork.fixed_point(ŷ·g)``, the same everywhere; the context networks
    take it (and the hyper-synthesis' (S, Mu) times the gain, floored to ``ACT_BITS``), and the fuse's
    correction (ΔS, ΔMu), in quantization steps, is divided by the gain and floored onto (S, Mu) at
    their ``out_frac`` bits (IEEE elementwise ops: identical everywhere); indexes and means follow with the hyperprior's
    thresholds and formula. Streams: [z, y], y holding the chunks in decode order.
    """

    def __init__(self, model: ContextModel):
        super().__init__(model)
        device = model.device
        self.slices = model.group_slices()
        self.groups = [
            ExactGroup(
                ExactNetwork(nn.Sequential(net.spatial), device),
                ExactNetwork(net.channel, device) if net.channel is not None else None,
                ExactNetwork(net.fuse, device, in_frac=ACT_BITS),
            )
            for net in model.context
        ]

    def walk(self, S: Tensor, Mu: Tensor, y_gain: Tensor, code: CodeStep) -> tuple[Tensor, Tensor, Tensor]:
        """Run the decode order, calling ``code`` for each chunk; (symbols, indexes, means), (B, M, h, w).

        The encoder and the decoder both run this; only ``code`` differs (round, or rANS-decode).
        Hundreds of small steps, so on one thread: with two, each step is a fork/join of the pool;
        on a busy 2-core machine (a training run beside) a Kodak image's quantize step took 11.6 s
        with two threads against 1.2 s with one; on an idle one, one thread cost ~3 % of the encode.
        Few, large steps: the per-pass values live in ``PassLayout`` columns (slices, not gathers),
        the channel context runs once per group on the whole image, the spatial context (a masked
        5×5) only at the non-anchors and only on its 12 non-zero taps, the pointwise fuse as
        matrix products on the pass's columns.
        """
        with engine.intra_op_threads(1):
            return self._walk(S, Mu, y_gain, code)

    def _walk(self, S: Tensor, Mu: Tensor, y_gain: Tensor, code: CodeStep) -> tuple[Tensor, Tensor, Tensor]:
        B, M, H, W = S.shape
        layout = PassLayout.of(H, W)
        out_frac = self.hyper.net.out_frac
        S_c, Mu_c = layout.columns(S), layout.columns(Mu)
        sym = torch.empty((B, M, H * W), dtype=torch.int32)
        idx = torch.empty((B, M, H * W), dtype=torch.int32)
        means = torch.empty((B, M, H * W), dtype=torch.float64)
        X = torch.zeros((B, M, H * W), dtype=torch.float64)  # decoded gained ŷ in fixed point, image order
        for sl, net in zip(self.slices, self.groups, strict=True):
            C = sl.stop - sl.start
            g = y_gain[sl].view(1, -1, 1)  # the context networks work in quantization steps
            hyper = floor_shift(torch.cat([S_c[:, sl] * g, Mu_c[:, sl] * g], 1), out_frac - ACT_BITS)
            context = (
                [layout.columns(net.channel(X[:, : sl.start].view(B, -1, H, W), ACT_BITS))]
                if net.channel is not None
                else []
            )
            for j, part in enumerate(layout.passes):
                if j:  # non-anchors: the group's decoded anchors
                    spatial = net.spatial.at(X[:, sl].view(B, C, H, W), layout.positions(part), ACT_BITS)
                else:  # anchors see no spatial context
                    spatial = torch.zeros((B, C, layout.anchors), dtype=torch.float64)
                fuse_in = torch.cat([hyper[..., part], spatial, *(t[..., part] for t in context)], 1)
                dS, dMu = net.fuse.columns(fuse_in, out_frac).chunk(2, 1)
                i_k, m_k = (
                    t[..., 0]
                    for t in self.hyper.indexes_and_means(
                        (S_c[:, sl, part] + torch.floor(dS / g))[..., None],  # back to the hyperprior's units
                        (Mu_c[:, sl, part] + torch.floor(dMu / g))[..., None],
                        y_gain[sl],
                    )
                )
                s_k = code(sl, part, i_k, m_k)
                sym[:, sl, part], idx[:, sl, part], means[:, sl, part] = s_k, i_k, m_k
                x_k = ExactNetwork.fixed_point(s_k.double() + m_k)
                X[:, sl, layout.positions(part)] = x_k
        return tuple(layout.image(t, H, W) for t in (sym, idx, means))

    def quantize(self, y: Tensor, z: Tensor, y_gain: Tensor, z_gain: Tensor) -> Latents:
        z_sym = self.z_symbols(z, z_gain)
        y_g = PassLayout.of(*y.shape[2:]).columns(y.double().cpu() * y_gain.view(1, -1, 1, 1))

        def round_chunk(sl: slice, part: slice, i_k: Tensor, m_k: Tensor) -> Tensor:
            return torch.round(y_g[:, sl, part] - m_k).int()

        return Latents(z_sym, *self.walk(*self.hyper.integer_outputs(z_sym, z_gain), y_gain, round_chunk), y_gain)

    def code(self, lat: Latents) -> list[Streams]:
        z_idx = self.z_indexes(tuple(lat.z_sym.shape[2:]))
        layout = PassLayout.of(*lat.y_sym.shape[2:])

        def in_order(t: Tensor) -> Tensor:  # the images' values chunk by chunk (channel-major within)
            return torch.cat([t[:, sl, part].flatten(1) for sl in self.slices for part in layout.passes], 1)

        y_sym, y_idx = in_order(layout.columns(lat.y_sym)), in_order(layout.columns(lat.indexes))
        return [
            [self.z_tables.encode(lat.z_sym[b], z_idx), self.y_tables.encode(y_sym[b], y_idx[b])]
            for b in range(lat.y_sym.shape[0])
        ]

    def decode(self, streams: list[Streams], z_shape: tuple[int, int], y_gain: Tensor, z_gain: Tensor) -> Latents:
        """Decode same-size images' streams; the context networks run between rANS parts, on the whole batch."""
        z_sym = self.decode_z(streams, z_shape)
        S, Mu = self.hyper.integer_outputs(z_sym, z_gain)
        decoders = [self.y_tables.decoder(s[1], S[0].numel()) for s in streams]

        def decode_chunk(sl: slice, part: slice, i_k: Tensor, m_k: Tensor) -> Tensor:
            return torch.stack([decoder(i) for decoder, i in zip(decoders, i_k, strict=True)])

        return Latents(z_sym, *self.walk(S, Mu, y_gain, decode_chunk), y_gain)


@register
class ContextModel(GainHyperprior):
    """The gained hyperprior plus per-group context corrections; hyperprior weights load with strict=False.

    Decode order (k = group, ◌ = being decoded, ■ = decoded, □ = not yet)::

        z ──► exact h_s ──► (S, Mu) hyper params of every group
        group 0 anchors   group 0 non-anchors   group 1 anchors   ...   group 4 non-anchors
          ◌ □ ◌ □            ■ ◌ ■ ◌              ◌ □ ◌ □                 ■ ◌ ■ ◌
          □ ◌ □ ◌            ◌ ■ ◌ ■              □ ◌ □ ◌                 ◌ ■ ◌ ■
        params: hyper      + anchors of k        + groups < k            + groups < k, anchors of k
    """

    kind = "gain-ctx"
    coder_class = ContextCoder
    context_params = ("context.",)

    def __init__(self, arch: Arch | None = None):
        arch = arch or Arch()
        super().__init__(arch)
        self.groups = groups_for(arch.M)
        starts = [sum(self.groups[:k]) for k in range(len(self.groups))]
        self.context = nn.ModuleList(GroupContext(C, P) for C, P in zip(self.groups, starts, strict=True))

    def group_slices(self) -> list[slice]:
        starts = [sum(self.groups[:k]) for k in range(len(self.groups) + 1)]
        return [slice(a, b) for a, b in zip(starts[:-1], starts[1:], strict=True)]

    def forward(self, x: Tensor, quality: Tensor, autocast_dtype: torch.dtype | None = None) -> dict:
        """As ``GainHyperprior.forward``; the context nets (float32) see STE-rounded decoded values."""
        y, y_gain, scales_h, means_h, z_lik = self.hyperprior(x, quality, autocast_dtype)
        y_lik, y_hat = self.context_pass(y, y_gain, scales_h, means_h)
        return self.synthesis_output(y_hat, y_lik, z_lik, autocast_dtype)

    def latent_rate(self, y: Tensor, quality: Tensor) -> dict:
        y_gain, z_gain = (g.to(y.device) for g in self.gains(quality))
        scales_h, means_h, z_lik = self.side_pass(y, z_gain)
        return {"y": self.context_pass(y, y_gain, scales_h, means_h)[0], "z": z_lik}

    def context_pass(self, y: Tensor, y_gain: Tensor, scales_h: Tensor, means_h: Tensor) -> tuple[Tensor, Tensor]:
        """(y likelihoods, STE-decoded un-gained ŷ) with the context corrections, group by group."""
        scales_g, means_g, decoded = self.corrected_params(y * y_gain, y_gain, scales_h, means_h, ste_round)
        _, y_lik = self.gaussian_conditional(y * y_gain, scales_g, means=means_g)
        return y_lik, decoded / y_gain

    def relaxed_latent(
        self, y: Tensor, scales: Tensor, means: Tensor, y_gain: Tensor, rounding: Callable[[Tensor], Tensor]
    ) -> tuple[Tensor, Tensor]:
        """See ``GainHyperprior.relaxed_latent``: ŷ on the context model's own lattice (its corrected
        means), so that encoder effort optimizes, and hands the exact coder, what this model codes."""
        scales_g, means_g, y_hat = self.corrected_params(y, y_gain, scales / y_gain, means / y_gain, rounding)
        gc = self.gaussian_conditional
        return y_hat, gc.likelihood_lower_bound(gc._likelihood(y_hat, scales_g, means_g))

    def corrected_params(
        self, y_g: Tensor, y_gain: Tensor, scales_h: Tensor, means_h: Tensor, rounding: Callable[[Tensor], Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(scales, means, decoded ŷ) of the gained latent ``y_g`` with the context corrections, group by
        group, rounding with ``rounding`` (STE in training, hard or soft for encoder effort).

        The context networks work in quantization steps (the gained latent): their inputs and
        corrections mean the same at every quality, so one network serves the whole ladder. The
        correction is divided by the gain on the way back to the hyperprior's parameters."""
        anchors = anchor_mask(*y_g.shape[2:]).to(y_g.device)
        scales, means, decoded = [], [], []  # decoded: gained ŷ (symbols + gained means), per group
        for k, sl in enumerate(self.group_slices()):
            net, g = self.context[k], y_gain[:, sl]
            s_h, m_h, y_k = scales_h[:, sl], means_h[:, sl], y_g[:, sl]
            hyper = torch.cat([s_h * g, m_h * g], 1)
            channel = net.channel(torch.cat(decoded, 1)) if net.channel is not None else None
            spatial = torch.zeros_like(y_k)
            s_k, m_k, yh_k = [], [], torch.zeros_like(spatial)
            for j, part in enumerate((anchors, ~anchors)):
                if j:  # non-anchors: the group's decoded anchors are the spatial context
                    spatial = net.spatial(yh_k)
                ds, dm = net.correction(hyper, spatial, channel)
                s, m = s_h + ds / g, m_h + dm / g
                yh_k = torch.where(part, rounding(y_k - m * g) + m * g, yh_k)
                s_k.append(s)
                m_k.append(m)
            scales.append(torch.where(anchors, *s_k))
            means.append(torch.where(anchors, *m_k))
            decoded.append(yh_k)
        return torch.cat(scales, 1) * y_gain, torch.cat(means, 1) * y_gain, torch.cat(decoded, 1)
