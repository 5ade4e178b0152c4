"""export/wasm.py on its own (no tinygrad): unique kernel names, the arena, the module's C,
one-line errors from clang and wasm-ld, and reading a module's imports and exports back."""

from __future__ import annotations

import pytest
from kits import wasmkit

from mnist_webgpu.core import records
from mnist_webgpu.export import wasm

KERNEL = """typedef float float4 __attribute__((aligned(16),ext_vector_type(4)));
void {name}(float* restrict data0_4, float* restrict data1_4) {{
  float4 v = (*((float4*)(data1_4)));
  *((float4*)(data0_4)) = v{op};
}}"""


def kernel(name: str, buffers: list[str], op: str = "") -> wasm.CKernel:
    return wasm.CKernel(name, KERNEL.format(name=name, op=op), buffers)


BUFFERS = [
    records.Buffer(id="input", kind="input", bytes=16),
    records.Buffer(id="t0", kind="intermediate", bytes=6),
    records.Buffer(id="output", kind="output", bytes=16),
]


def test_duplicate_kernel_names_are_made_unique():
    ks = wasm.unique_names([kernel("r_10", ["input", "t0"]), kernel("r_10", ["t0", "output"], "*2")])
    assert [k.name for k in ks] == ["r_10", "r_10_1"]
    assert "void r_10_1(" in ks[1].source and "void r_10(" not in ks[1].source
    assert ks[0].source == kernel("r_10", []).source


def test_arena_aligns_every_buffer():
    offsets, size = wasm.arena(BUFFERS)
    assert offsets == {"input": 0, "t0": 16, "output": 32} and size == 48


def test_module_exports_exactly_memory_net_and_arena():
    ks = wasm.unique_names([kernel("k", ["input", "t0"]), kernel("k", ["t0", "output"], "*2")])
    offsets, size = wasm.arena(BUFFERS)
    source = wasm.c_source(ks, offsets, size)
    assert "#include" not in source and source.count("typedef float float4") == 1
    assert "  k(" in source and "  k_1(" in source
    blob = wasm.compile_c(source, "model 'm'", ks)
    imports, exports = wasm.sections(blob)
    assert imports == [] and sorted(exports) == [
        ("arena", "global"),
        ("memory", "memory"),
        ("net", "function"),
    ]
    assert wasm.module_problems(blob) == []


def test_a_libm_call_is_one_line_naming_kernel_and_function():
    ks = [
        wasm.CKernel(
            "k", KERNEL.format(name="k", op="").replace("= v;", "= v * powf(2.0f, 3.0f);"), ["a", "b"]
        )
    ]
    offsets, size = wasm.arena([records.Buffer(id=i, kind="x", bytes=16) for i in "ab"])
    with pytest.raises(wasm.WasmError) as info:
        wasm.compile_c(wasm.c_source(ks, offsets, size), "model 'm'", ks)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("model 'm': kernel k calls powf(), which a freestanding WebAssembly module")


def test_c_that_does_not_compile_names_its_kernel():
    ks = [wasm.CKernel("k", KERNEL.format(name="k", op=" + nosuch"), ["a", "b"])]
    offsets, size = wasm.arena([records.Buffer(id=i, kind="x", bytes=16) for i in "ab"])
    with pytest.raises(
        wasm.WasmError, match=r"^model 'm': kernel k: the C kernels do not compile for wasm32: .*nosuch"
    ):
        wasm.compile_c(wasm.c_source(ks, offsets, size), "model 'm'", ks)


def test_module_problems_name_imports_and_missing_exports():
    assert wasm.module_problems(wasmkit.MODULE) == []
    assert wasm.module_problems(b"MZ\0\0")[0].startswith("not a WebAssembly 1.0 binary")
    # one imported function, env.f, and only the memory exported
    problems = wasm.module_problems(wasmkit.importing("env", "f"))
    assert problems[0] == "imports env.f (cpu.js provides none)"
    assert "exports no function 'net'" in problems and "exports no global 'arena'" in problems
