// The WebGPU backend: the exported WGSL kernels, dispatched in manifest order.
// Pipelines, bind groups and buffers are built once per device and reused by every
// inference; runtime.js makes sure only one inference uses them at a time.

const DEFAULT_STORAGE_BUFFERS = 8; // what a page gets without asking

function roundUp4(bytes) {
  return Math.max(4, Math.ceil(bytes / 4) * 4);
}

/** Thrown instead of starting on a software adapter when the caller would rather not. */
export class FallbackAdapterError extends Error {}

async function requestDevice(manifest, allowFallback) {
  if (!globalThis.navigator?.gpu) throw new Error("WebGPU is not available in this browser (no navigator.gpu)");
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("WebGPU is not available: requestAdapter() returned no adapter");
  // a software adapter (SwiftShader, WARP) runs the kernels on the CPU, far slower than the CPU path
  if (!allowFallback && (adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter)) {
    const name = adapter.info?.architecture || adapter.info?.description || "software";
    throw new FallbackAdapterError(`the only WebGPU adapter is a software one (${name})`);
  }
  const needed = Math.max(...manifest.kernels.map((k) => k.bindings.length));
  const requiredLimits = {};
  if (needed > DEFAULT_STORAGE_BUFFERS) {
    const allowed = adapter.limits.maxStorageBuffersPerShaderStage;
    if (allowed < needed) throw new Error(`WebGPU adapter allows ${allowed} storage buffers per stage, a kernel needs ${needed}`);
    requiredLimits.maxStorageBuffersPerShaderStage = needed;
  }
  // never ask for shader-f16: the exporter guarantees f32-only kernels, and many adapters lack it
  return adapter.requestDevice({ requiredLimits });
}

/**
 * Resolves to a backend { name, lost, run(pixels) -> Promise<Float32Array>, dispose() }; rejects on
 * any WebGPU error, and with a FallbackAdapterError on a software adapter unless allowFallback.
 */
export async function createWebGPUBackend(manifest, weights, { allowFallback = true } = {}) {
  const device = await requestDevice(manifest, allowFallback);
  const backend = { name: "webgpu", lost: false };
  device.lost.then(() => {
    backend.lost = true;
  });
  const { STORAGE, COPY_DST, COPY_SRC, UNIFORM, MAP_READ } = GPUBufferUsage;
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  try {
    const buffers = new Map();
    for (const b of manifest.buffers) {
      const usage = STORAGE | (b.kind === "input" ? COPY_DST : 0) | (b.kind === "output" ? COPY_SRC : 0);
      const buffer = device.createBuffer({ size: roundUp4(b.bytes), usage, mappedAtCreation: b.kind === "weight" });
      if (b.kind === "weight") {
        new Float32Array(buffer.getMappedRange()).set(weights.get(b.name));
        buffer.unmap();
      }
      buffers.set(b.id, buffer);
    }
    // WGSL has no infinity literal: tinygrad's kernels read it from binding 0
    const infinity = device.createBuffer({ size: 4, usage: UNIFORM, mappedAtCreation: true });
    new Float32Array(infinity.getMappedRange()).set([Infinity]);
    infinity.unmap();
    const outputBytes = manifest.output.shape.reduce((a, b) => a * b, 1) * 4;
    const readback = device.createBuffer({ size: roundUp4(outputBytes), usage: MAP_READ | COPY_DST });

    const steps = await Promise.all(
      manifest.kernels.map(async (kernel) => {
        // explicit layouts: "auto" would drop binding 0 when a kernel never reads INFINITY
        const layout = device.createBindGroupLayout({
          entries: [
            { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform" } },
            ...kernel.bindings.map((b) => ({ binding: b.binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: "storage" } })),
          ],
        });
        const module = device.createShaderModule({ code: kernel.source, label: kernel.name });
        const pipeline = await device.createComputePipelineAsync({
          label: kernel.name,
          layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
          compute: { module, entryPoint: kernel.entry_point },
        });
        const bindGroup = device.createBindGroup({
          layout,
          entries: [
            { binding: 0, resource: { buffer: infinity } },
            ...kernel.bindings.map((b) => ({ binding: b.binding, resource: { buffer: buffers.get(b.buffer) } })),
          ],
        });
        return { pipeline, bindGroup, dispatch: kernel.dispatch };
      }),
    );
    const validation = await device.popErrorScope();
    const memory = await device.popErrorScope();
    if (validation || memory) throw new Error(`WebGPU setup failed: ${(validation || memory).message}`);

    const input = buffers.get(manifest.input.buffer);
    const output = buffers.get(manifest.output.buffer);
    backend.run = async (pixels) => {
      device.queue.writeBuffer(input, 0, pixels);
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      for (const step of steps) {
        pass.setPipeline(step.pipeline);
        pass.setBindGroup(0, step.bindGroup);
        pass.dispatchWorkgroups(...step.dispatch);
      }
      pass.end();
      encoder.copyBufferToBuffer(output, 0, readback, 0, outputBytes);
      device.queue.submit([encoder.finish()]);
      await readback.mapAsync(GPUMapMode.READ);
      const logits = new Float32Array(readback.getMappedRange(0, outputBytes).slice(0));
      readback.unmap();
      return logits;
    };
    backend.dispose = () => {
      for (const buffer of buffers.values()) buffer.destroy();
      infinity.destroy();
      readback.destroy();
      device.destroy();
    };
    return backend;
  } catch (err) {
    device.destroy();
    throw err;
  }
}
