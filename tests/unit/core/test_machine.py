"""The processor line every speed figure carries: its name and widest vector set, read from
/proc/cpuinfo, because the same kernels run at different speeds on AVX2 and AVX-512."""

from __future__ import annotations

from mnist_webgpu.core import machine

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512vl avx512bw

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512vl avx512bw
"""
EPYC = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
GRAVITON = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes crc32\n"


def test_the_widest_vector_set_is_named():
    assert machine.processor(XEON) == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz (AVX-512)"
    assert machine.processor(EPYC) == "AMD EPYC (AVX2)"


def test_an_arm_processor_without_a_model_name_still_says_what_it_has():
    line = machine.processor(GRAVITON)
    assert line.endswith("(NEON)") and not line.startswith(" (")


def test_this_machine_is_named():
    line = machine.processor()
    assert line and "unknown processor" not in line
