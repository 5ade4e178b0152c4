"""mnist-webgpu: MNIST -> tinygrad models -> WGSL kernels -> a static WebGPU web app."""

__version__ = "0.1.0"
