// Generated from Graphs/targets/*.hw by `KVPLAN_RECORD=1 swift test --filter TargetParserTests`.
// Do not edit by hand: edit the .hw file and re-record.

/// The bundled target presets, by name, as .hw source.
public enum TargetPresets {
    /// Preset names.
    public static let names: [String] = ["cpu", "datacenter-gpu", "edge-npu"]

    /// The .hw source of preset `name`.
    public static func source(_ name: String) -> String? { sources[name] }

    static let sources: [String: String] = [
        "cpu": #"""
# cpu: the machine kvplan is developed and tested on (x86-64, AVX2/FMA, 2 cores).
# The "scratchpad" is one core's L2 cache (1 MiB), DRAM is the main memory,
# and "host" stands for a slower backing store (e.g. NVMe-backed swap).
# Figures measured or read on this machine kind: 1 MiB L2 per core
# (/sys/devices/system/cpu/cpu0/cache/index2/size), ~47 GB/s streamed from
# DRAM by one core, ~52 GFLOP/s f32 FMA in L1 with four SIMD8 accumulators
# (REFERENCES.md §3).
target cpu

tier scratchpad capacity=1MiB   bandwidth=200GB/s alignment=64   latency=4ns
tier dram       capacity=24GiB  bandwidth=47GB/s  alignment=64   latency=90ns
tier host       capacity=256GiB bandwidth=2GB/s   alignment=4096 latency=100us

link dram <-> scratchpad bandwidth=47GB/s latency=90ns
link host <-> dram       bandwidth=2GB/s  latency=100us

compute f32=52GFLOP/s f16=26GFLOP/s bf16=26GFLOP/s i8=100GOP/s i32=26GOP/s

"""#,
        "datacenter-gpu": #"""
# datacenter-gpu: an H100-class accelerator.
# 50 MiB of on-chip memory (L2 + shared memory), 80 GiB of HBM at 3.35 TB/s,
# and host memory over a 64 GB/s link (PCIe 5.0 x16).
target datacenter-gpu

tier onchip capacity=50MiB  bandwidth=12TB/s   alignment=128  latency=30ns
tier hbm    capacity=80GiB  bandwidth=3.35TB/s alignment=256  latency=500ns
tier host   capacity=2TiB   bandwidth=64GB/s   alignment=4096 latency=5us

link hbm <-> onchip bandwidth=3.35TB/s latency=500ns
link host <-> hbm   bandwidth=64GB/s   latency=5us

compute f16=989TFLOP/s bf16=989TFLOP/s f32=67TFLOP/s i8=1979TOP/s i32=33TOP/s

"""#,
        "edge-npu": #"""
# edge-npu: an inference accelerator for phones and embedded boards.
# 2 MiB of on-chip SRAM, 8 GiB of LPDDR at 50 GB/s, and the host's memory
# reached over an 8 GB/s link.
target edge-npu

tier sram   capacity=2MiB  bandwidth=400GB/s alignment=64   latency=2ns
tier lpddr  capacity=8GiB  bandwidth=50GB/s  alignment=64   latency=100ns
tier host   capacity=64GiB bandwidth=8GB/s   alignment=4096 latency=2us

link lpddr <-> sram  bandwidth=50GB/s latency=100ns
link host <-> lpddr  bandwidth=8GB/s  latency=2us

compute i8=8TOP/s i4=16TOP/s f16=2TFLOP/s bf16=2TFLOP/s f32=0.5TFLOP/s i32=0.5TOP/s

"""#,
    ]
}
