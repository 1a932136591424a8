"""`load_generator` and `Generator`: converted weights on device behind jitted, shape-bucketed functions."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ifgan_jax import latents, parallel
from ifgan_jax.errors import InputError
from ifgan_jax.images import postprocess
from ifgan_jax.models.base import CONFIG_CUTOFF, SPACES, Architecture, normalize_z
from ifgan_jax.zoo import store
from ifgan_jax.zoo.cache import resolve_model_dir
from ifgan_jax.zoo.registry import DEFAULT_MODEL, family_module

# XLA:CPU keeps activations in cache when a big batch runs as a loop of small ones (benchmarks/NOTES.md:
# 16 x 16 beat one batch of 256 by 1.7x; with the DCGAN's GEMM up-sampling 8 beat 16 by 0-10%); accelerators
# want the whole batch. A family may ask for its own (Architecture.cpu_micro_batch).
CPU_MICRO_BATCH = 8
DEFAULT_MAX_BATCH = 256


class Generator:
    """A pretrained generator: sample codes, synthesize images; every call jitted per static batch shape."""

    def __init__(
        self,
        name: str,
        arch: Architecture,
        params: dict,
        buffers: dict,
        *,
        micro_batch: int | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        devices: int | None = None,
        config: Any = None,
    ):
        self.name = name
        self.arch = arch
        self.config = config  # the family's frozen Config (architecture and sampling settings)
        self.mesh = parallel.data_mesh(devices)
        replicated = NamedSharding(self.mesh, P())
        self.params = jax.device_put(params, replicated)
        self.buffers = jax.device_put(buffers, replicated)
        on_cpu = self.mesh.devices.flat[0].platform == "cpu"
        if micro_batch is None:
            micro_batch = (arch.cpu_micro_batch or CPU_MICRO_BATCH) if on_cpu else 0
        self.micro_batch = int(micro_batch)
        self._synthesize = arch.cpu_synthesize if on_cpu and arch.cpu_synthesize else arch.synthesize
        self.max_batch = max(int(max_batch), self.num_devices * max(self.micro_batch, 1))
        self._forward = jax.jit(self._sharded_forward, static_argnames=("space", "head", "noise_mode"))

    # -- facts ---------------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.arch.latent_dim

    @property
    def resolution(self) -> int:
        return self.arch.resolution

    @property
    def spaces(self) -> tuple[str, ...]:
        return self.arch.spaces

    @property
    def num_layers(self) -> int:
        return self.arch.num_layers

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def family(self) -> str:
        return self.arch.family

    @property
    def has_mapping(self) -> bool:
        """Whether W and W+ codes derive from Z (the StyleGAN families)."""
        return self.arch.has_mapping

    @property
    def normalize_z(self) -> bool:
        """Whether Z codes are rescaled to norm sqrt(d) before synthesis (InterFaceGAN's PGGAN and StyleGAN)."""
        return self.arch.normalize_z

    @property
    def noise_modes(self) -> tuple[str, ...]:
        """The noise modes `synthesize` accepts; () for a family without noise inputs."""
        return self.arch.noise_modes

    def code_shape(self, space: str) -> tuple[int, ...]:
        """Shape of one code of `space` (no batch axis); an InputError for a space the model lacks."""
        try:
            return self.arch.code_shape(space)
        except ValueError as err:
            raise InputError(str(err)) from None

    def code_layout(self, space: str = "z") -> dict[str, tuple[int, ...]]:
        """The code arrays a run keeps for codes of `space`: Z of a mapped model brings its W and W+."""
        if space == "z" and self.has_mapping:
            return {s: self.code_shape(s) for s in SPACES}
        return {space: self.code_shape(space)}

    @property
    def synthesis_space(self) -> str:
        """The space sampled images are rendered from: W+ (truncated) where there is a mapping, else Z."""
        return "wp" if self.has_mapping else "z"

    def truncation_profile(self) -> np.ndarray:
        """Per W+ layer, the factor the model's truncation scales (w - w_avg) by: psi on the cut-off layers,
        1 on the rest; (num_layers,) float32. An InputError for a model without truncation."""
        if self.arch.truncation is None:
            raise InputError(f"{self.name} has no truncation (spaces: {', '.join(self.spaces)})")
        psi, cutoff = self.arch.truncation
        cut = self.num_layers if cutoff is None else min(int(cutoff), self.num_layers)
        return np.array([psi] * cut + [1.0] * (self.num_layers - cut), np.float32)

    def __repr__(self) -> str:
        return (f"Generator({self.name!r}, family={self.arch.family}, resolution={self.resolution}, "
                f"latent_dim={self.latent_dim}, spaces={self.spaces}, devices={self.num_devices})")

    # -- codes ---------------------------------------------------------------------------------
    def sample_latents(self, seed: int = 0, start: int = 0, count: int = 1) -> np.ndarray:
        """Z codes for sample indices [start, start + count): (count, latent_dim) float32."""
        return latents.sample_latents(seed, start, count, self.latent_dim)

    def codes_from_z(self, z: Any, space: str, *, chunk: int | None = None) -> np.ndarray:
        """The codes of `space` for Z codes, as `sample` writes them (mapped; truncated for W+): numpy, computed
        `chunk` codes at a time (None: all at once). A code's bits can depend on the chunk size it ran at
        (XLA picks kernels by shape): callers that must reproduce each other use the same one."""
        self.code_shape(space)
        z = self.check_codes(z, "z")
        if space == "z":
            return z
        if not self.has_mapping:
            raise InputError(f"{self.name} has only Z codes; {space!r} codes need a mapping network")
        step = chunk or max(len(z), 1)
        parts = []
        for i in range(0, len(z), step):
            w = self.mapping(z[i : i + step])
            parts.append(np.asarray(self.truncate(w) if space == "wp" else w))
        return np.concatenate(parts) if parts else np.zeros((0, *self.code_shape(space)), np.float32)

    def apply_codes_from_z(self, params: Any, buffers: Any, z: jax.Array, space: str) -> jax.Array:
        """Traceable `codes_from_z` over given params and buffers (inside a caller's jit)."""
        return self.arch.codes_from_z(params, buffers, z, space)

    def apply_synthesize(self, params: Any, buffers: Any, codes: jax.Array, space: str, *,
                         key: jax.Array | None = None, noise_mode: str | None = None,
                         differentiable: bool = True) -> jax.Array:
        """Traceable raw synthesis over given params and buffers (inside a caller's jit: inversion, training).
        differentiable False may use the family's CPU-staged program (same images, no gradients)."""
        fn = self._synthesize if not differentiable else self.arch.synthesize
        return fn(params, buffers, codes, space, key, noise_mode)

    def check_noise_mode(self, noise_mode: str | None, *, keyed: bool = True) -> str | None:
        """noise_mode as given, checked against the family's (None: the model's own)."""
        if noise_mode is None:
            return None
        if not self.noise_modes:
            raise InputError(f"{self.name} ({self.family}) has no noise inputs; noise_mode does not apply")
        if noise_mode not in self.noise_modes:
            raise InputError(f"noise_mode must be one of {', '.join(self.noise_modes)}, got {str(noise_mode)[:40]!r}")
        if noise_mode == "random" and not keyed:
            raise InputError("noise_mode 'random' needs a PRNG key")
        return noise_mode

    def check_codes(self, codes: Any, space: str = "z") -> np.ndarray:
        """Validate codes for `space` (shape, finiteness) and return them as float32 numpy."""
        shape = self.code_shape(space)
        arr = np.asarray(codes)
        if arr.ndim == len(shape):
            arr = arr[None]
        if arr.ndim != len(shape) + 1 or arr.shape[1:] != shape:
            raise InputError(f"{space} codes for {self.name} must have shape (N, {', '.join(map(str, shape))}), "
                             f"got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"codes must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float32, copy=False)
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr.reshape(len(arr), -1))).any(axis=1).sum())
            raise InputError(f"{bad} of {len(arr)} codes contain NaN or infinite values")
        return arr

    # -- synthesis -----------------------------------------------------------------------------
    def padded_size(self, n: int) -> int:
        """The static batch size a batch of n runs at: a power of two times the device count."""
        unit = self.num_devices
        per_device = max(1, -(-n // unit))
        size = 1 << (per_device - 1).bit_length()
        if self.micro_batch and size > self.micro_batch:
            size = -(-size // self.micro_batch) * self.micro_batch
        return size * unit

    def synthesize(self, codes: Any, space: str = "z", *, key: jax.Array | None = None,
                   noise_mode: str | None = None) -> jax.Array:
        """Raw images (N, H, W, 3) float32 for codes in `space` (Z codes are normalized when the model says).

        noise_mode: 'const' | 'random' | 'none' for the StyleGAN families with noise inputs (None: the
        model's). key: random noise's PRNG key, either one key (image i gets the key folded with i, whatever
        the batching) or one key per image, shape (N,)."""
        return self._run(codes, space, key, noise_mode, _raw_head, None)

    def synthesize_uint8(self, codes: Any, space: str = "z", *, key: jax.Array | None = None,
                         noise_mode: str | None = None) -> jax.Array:
        """Images as uint8 (N, H, W, 3), postprocessed on device (a quarter of the transfer)."""
        return self._run(codes, space, key, noise_mode, _uint8_head, None)

    def synthesize_with(self, codes: Any, head: Callable, head_params: Any = None, space: str = "z", *,
                        key: jax.Array | None = None, noise_mode: str | None = None) -> Any:
        """`head(head_params, raw_images)` fused into the synthesis jit, per micro-batch (e.g. scoring).

        `head` must be a hashable, stable function (it is a static jit argument); it returns a pytree of
        arrays with the batch axis first.
        """
        return self._run(codes, space, key, noise_mode, head, head_params)

    def mapping(self, z: Any) -> jax.Array:
        """Untruncated W codes for Z codes (StyleGAN only)."""
        if not self.has_mapping:
            raise InputError(f"{self.name} has no mapping network (spaces: {self.spaces})")
        z = normalize_z(self.check_codes(z, "z")) if self.arch.normalize_z else jnp.asarray(z)
        return _jit_call(self.arch.mapping, self.params, self.buffers, z)

    def truncate(self, w: Any, psi: float | None = None, cutoff: int | None = CONFIG_CUTOFF) -> jax.Array:
        """Truncated W+ codes (N, L, d) for W codes (StyleGAN families): w_avg + psi (w - w_avg) on the first
        `cutoff` layers. psi None: the model's (InterFaceGAN's 0.7 for StyleGAN, NVlabs' 1 for StyleGAN2/3);
        cutoff: None for every layer, CONFIG_CUTOFF (the default) for the model's."""
        if self.arch.truncate is None:
            raise InputError(f"{self.name} has no truncation (spaces: {self.spaces})")
        if psi is not None and not (isinstance(psi, (int, float)) and math.isfinite(psi)):
            raise InputError(f"psi must be a finite number or None, got {psi!r}")
        if cutoff is not None and cutoff != CONFIG_CUTOFF and not (isinstance(cutoff, int) and cutoff >= 0):
            raise InputError(f"cutoff must be a layer count >= 0 or None (every layer), got {cutoff!r}")
        return _jit_truncate(self.arch.truncate, self.params, self.buffers, jnp.asarray(self.check_codes(w, "w")),
                             None if psi is None else float(psi), cutoff)

    def _run(self, codes: Any, space: str, key: jax.Array | None, noise_mode: str | None, head: Callable,
             head_params: Any) -> Any:
        noise_mode = self.check_noise_mode(noise_mode)
        if isinstance(codes, jax.Array):
            if codes.ndim == len(self.code_shape(space)):
                codes = codes[None]
        else:
            codes = self.check_codes(codes, space)
        n = codes.shape[0]
        keys = None if key is None else _per_image_keys(key, n)
        outputs = []
        for start in range(0, max(n, 1), self.max_batch):
            chunk = jnp.asarray(codes[start : start + self.max_batch])
            chunk_keys = None if keys is None else keys[start : start + self.max_batch]
            size = self.padded_size(max(chunk.shape[0], 1))
            pad = size - chunk.shape[0]
            if pad:
                chunk = jnp.concatenate([chunk, jnp.zeros((pad, *chunk.shape[1:]), jnp.float32)])
                if chunk_keys is not None:
                    chunk_keys = jnp.concatenate([chunk_keys, jnp.broadcast_to(chunk_keys[:1], (pad,))])
            out = self._forward(self.params, self.buffers, head_params, chunk, chunk_keys,
                                space=space, head=head, noise_mode=noise_mode)
            outputs.append(jax.tree.map(lambda x, k=size - pad: x[:k], out) if pad else out)
        if len(outputs) == 1:
            return outputs[0]
        return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outputs)

    def _local_forward(self, params, buffers, head_params, codes, keys, *, space: str, head: Callable,
                       noise_mode: str | None) -> Any:
        if space == "z" and self.arch.normalize_z:
            codes = normalize_z(codes)

        def body(chunk, chunk_keys):
            images = self._synthesize(params, buffers, chunk, space, chunk_keys, noise_mode)
            return _apply_head(head, head_params, images)

        n, micro = codes.shape[0], self.micro_batch
        if not micro or n <= micro:
            return body(codes, keys)
        chunks = codes.reshape(n // micro, micro, *codes.shape[1:])
        if keys is None:
            out = jax.lax.map(lambda c: body(c, None), chunks)
        else:
            out = jax.lax.map(lambda ck: body(*ck), (chunks, keys.reshape(n // micro, micro)))
        return jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), out)

    def _sharded_forward(self, params, buffers, head_params, codes, keys, *, space: str, head: Callable,
                         noise_mode: str | None) -> Any:
        local = functools.partial(self._local_forward, space=space, head=head, noise_mode=noise_mode)
        if self.num_devices == 1:
            return local(params, buffers, head_params, codes, keys)
        spec = P(parallel.DATA_AXIS)
        if keys is None:
            def fn(p, b, hp, c):
                return local(p, b, hp, c, None)
            args, in_specs = (params, buffers, head_params, codes), (P(), P(), P(), spec)
        else:  # per-image keys travel with their images
            fn, args, in_specs = local, (params, buffers, head_params, codes, keys), (P(), P(), P(), spec, spec)
        return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=spec)(*args)


def _per_image_keys(key: jax.Array, n: int) -> jax.Array:
    """Typed PRNG keys (n,): one per image given, or key folded with each image's index."""
    key = jnp.asarray(key)
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    if key.ndim == 1:
        if key.shape[0] != n:
            raise InputError(f"key must be one PRNG key or one per image ({n}), got {key.shape[0]}")
        return key
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n, dtype=jnp.uint32))


def _apply_head(head: Callable, head_params: Any, images: jax.Array) -> Any:
    # A head (a predictor) sees at most CPU_MICRO_BATCH images at once, also where the family's own CPU
    # micro-batch is larger: the FER net, tuned at 8, keeps its activations in cache. The elementwise
    # image heads need no chunks.
    n = images.shape[0]
    if head in (_raw_head, _uint8_head) or n <= CPU_MICRO_BATCH or n % CPU_MICRO_BATCH:
        return head(head_params, images)
    chunks = images.reshape(n // CPU_MICRO_BATCH, CPU_MICRO_BATCH, *images.shape[1:])
    out = jax.lax.map(lambda x: head(head_params, x), chunks)
    return jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), out)


def _raw_head(_, images: jax.Array) -> jax.Array:
    return images


def _uint8_head(_, images: jax.Array) -> jax.Array:
    return postprocess(images)


@functools.partial(jax.jit, static_argnums=0)
def _jit_call(fn, params, buffers, x):
    return fn(params, buffers, x)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _jit_truncate(fn, params, buffers, w, psi, cutoff):
    return fn(params, buffers, w, psi=psi, cutoff=cutoff)


def load_generator(
    model: str | os.PathLike = DEFAULT_MODEL,
    *,
    weights: str | os.PathLike | None = None,
    micro_batch: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    devices: int | None = None,
) -> Generator:
    """A registry name (converted and cached on first use) or a converted-model directory -> Generator."""
    directory = resolve_model_dir(model, weights)
    manifest, params, buffers = store.load_model(directory)
    try:
        module = family_module(manifest["family"])
        config = module.Config(**manifest["config"])
        if hasattr(module, "param_shapes"):  # the config must build the arrays' shapes, or fail here in one line
            store.check_shapes(directory, {"params": params, "buffers": buffers},
                               dict(zip(("params", "buffers"), module.param_shapes(config), strict=True)))
        name = manifest.get("source", {}).get("model") or str(model)
        return Generator(name, module.architecture(config), params, buffers,
                         micro_batch=micro_batch, max_batch=max_batch, devices=devices, config=config)
    except InputError:
        raise
    except ValueError as err:  # a bad option or config, named by the model's own check
        raise InputError(str(err)) from None
