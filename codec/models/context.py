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

from ..exact import ACT_BITS, ExactNetwork, floor_shift
from ..tensors import ste_round
from .base import Streams
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


#: code(group channels, positions, indexes, gained means) -> symbols; all (B, C, n): the group's
#: values at the n flat ``positions`` of this pass, in stream order.
CodeStep = Callable[[slice, Tensor, Tensor, Tensor], Tensor]


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

    def order(self, h: int, w: int) -> list[tuple[slice, Tensor]]:
        """The chunks (group channels, flat positions) in decode order: per group, anchors then the rest."""
        flat = anchor_mask(h, w).reshape(-1)
        passes = (flat.nonzero()[:, 0], (~flat).nonzero()[:, 0])
        return [(sl, pos) for sl in self.slices for pos in passes]

    def walk(self, S: Tensor, Mu: Tensor, y_gain: Tensor, code: CodeStep) -> tuple[Tensor, Tensor, Tensor]:
        """Run the decode order, calling ``code`` for each chunk; (symbols, indexes, means), (B, M, h, w).

        The encoder and the decoder both run this; only ``code`` differs (round, or rANS-decode).
        The fuse is pointwise, so it runs on the pass's positions only.
        """
        B, M, H, W = S.shape
        out_frac = self.hyper.net.out_frac
        sym = torch.zeros((B, M, H * W), dtype=torch.int32)
        idx = torch.zeros((B, M, H * W), dtype=torch.int32)
        means = torch.zeros((B, M, H * W), dtype=torch.float64)
        X = torch.zeros((B, M, H * W), dtype=torch.float64)  # decoded gained ŷ in fixed point
        S_flat, Mu_flat = S.reshape(B, M, -1), Mu.reshape(B, M, -1)
        gain = y_gain.view(1, -1, 1)
        hyper_act = floor_shift(torch.cat([S_flat * gain, Mu_flat * gain], 1), out_frac - ACT_BITS)

        def image(t: Tensor) -> Tensor:
            return t.reshape(B, -1, H, W)

        for k, (sl, pos) in enumerate(self.order(H, W)):
            net = self.groups[k // 2]
            if k % 2 == 0:  # a new group: its hyper params and channel context
                inputs = [hyper_act[:, sl], hyper_act[:, M + sl.start : M + sl.stop]]
                if net.channel is not None:
                    inputs.append(net.channel(image(X[:, : sl.start]), ACT_BITS).reshape(B, -1, H * W))
                spatial = torch.zeros_like(X[:, sl])  # anchors see no spatial context
            else:  # non-anchors: the group's decoded anchors
                spatial = net.spatial(image(X[:, sl]), ACT_BITS).reshape(B, -1, H * W)
            fuse_in = torch.cat([t[:, :, pos] for t in (*inputs[:2], spatial, *inputs[2:])], 1)[..., None]
            dS, dMu = net.fuse(fuse_in, out_frac)[..., 0].chunk(2, 1)
            g = gain[:, sl]  # the correction is in quantization steps: back to the hyperprior's units
            i_k, m_k = (
                t[..., 0]
                for t in self.hyper.indexes_and_means(
                    (S_flat[:, sl, pos] + torch.floor(dS / g))[..., None],
                    (Mu_flat[:, sl, pos] + torch.floor(dMu / g))[..., None],
                    y_gain[sl],
                )
            )
            s_k = code(sl, pos, i_k, m_k)
            sym[:, sl, pos], idx[:, sl, pos], means[:, sl, pos] = s_k, i_k, m_k
            X[:, sl, pos] = ExactNetwork.fixed_point(s_k.double() + m_k)
        return image(sym), image(idx), image(means)

    def quantize(self, y: Tensor, z: Tensor, y_gain: Tensor, z_gain: Tensor) -> Latents:
        z_sym = self.z_symbols(z, z_gain)
        y_g = (y.double().cpu() * y_gain.view(1, -1, 1, 1)).flatten(2)

        def round_chunk(sl: slice, pos: Tensor, i_k: Tensor, m_k: Tensor) -> Tensor:
            return torch.round(y_g[:, sl, pos] - m_k).int()

        return Latents(z_sym, *self.walk(*self.hyper.integer_outputs(z_sym, z_gain), y_gain, round_chunk), y_gain)

    def code(self, lat: Latents) -> list[Streams]:
        z_idx = self.z_indexes(tuple(lat.z_sym.shape[2:]))
        order = self.order(*lat.y_sym.shape[2:])

        def in_order(t: Tensor) -> Tensor:  # one image's values, chunk by chunk (channel-major, then raster)
            return torch.cat([t.flatten(1)[sl, pos].reshape(-1) for sl, pos in order])

        return [
            [
                self.z_tables.encode(lat.z_sym[b], z_idx),
                self.y_tables.encode(in_order(lat.y_sym[b]), in_order(lat.indexes[b])),
            ]
            for b in range(lat.y_sym.shape[0])
        ]

    def decode(self, streams: list[Streams], z_shape: tuple[int, int], y_gain: Tensor, z_gain: Tensor) -> Latents:
        """Decode same-size images' streams; the context networks run between rANS parts, on the whole batch."""
        z_sym = self.decode_z(streams, z_shape)
        S, Mu = self.hyper.integer_outputs(z_sym, z_gain)
        parts = [self.y_tables.decoder(s[1], S[0].numel()) for s in streams]

        def decode_chunk(sl: slice, pos: Tensor, i_k: Tensor, m_k: Tensor) -> Tensor:
            return torch.stack([part(i) for part, i in zip(parts, i_k, strict=True)])

        return Latents(z_sym, *self.walk(S, Mu, y_gain, decode_chunk), y_gain)


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
        """(y likelihoods, STE-decoded un-gained ŷ) with the context corrections, group by group.

        The context networks work in quantization steps (the gained latent): their inputs and
        corrections mean the same at every quality, so one network serves the whole ladder. The
        correction is divided by the gain on the way back to the hyperprior's parameters."""
        anchors = anchor_mask(*y.shape[2:]).to(y.device)
        scales, means, decoded = [], [], []  # decoded: gained ŷ (symbols + gained means), per group
        for k, sl in enumerate(self.group_slices()):
            net, g = self.context[k], y_gain[:, sl]
            s_h, m_h, y_g = scales_h[:, sl], means_h[:, sl], y[:, sl] * g
            hyper = torch.cat([s_h * g, m_h * g], 1)
            channel = net.channel(torch.cat(decoded, 1)) if net.channel is not None else None
            spatial = torch.zeros_like(y_g)
            s_k, m_k, yh_k = [], [], torch.zeros_like(spatial)
            for j, part in enumerate((anchors, ~anchors)):
                if j:  # non-anchors: the group's decoded anchors are the spatial context
                    spatial = net.spatial(yh_k)
                ds, dm = net.correction(hyper, spatial, channel)
                s, m = s_h + ds / g, m_h + dm / g
                yh_k = torch.where(part, ste_round(y_g - m * g) + m * g, yh_k)
                s_k.append(s)
                m_k.append(m)
            scales.append(torch.where(anchors, *s_k))
            means.append(torch.where(anchors, *m_k))
            decoded.append(yh_k)
        scales_g, means_g = torch.cat(scales, 1) * y_gain, torch.cat(means, 1) * y_gain
        _, y_lik = self.gaussian_conditional(y * y_gain, scales_g, means=means_g)
        return y_lik, torch.cat(decoded, 1) / y_gain
