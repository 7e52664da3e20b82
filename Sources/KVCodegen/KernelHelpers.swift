// The helpers every Kernels.swift starts with: thread splitting and the dot products over each
// weight storage format (decode attention's building blocks: AttentionHelpers.swift). They are
// written in the habits REFERENCES §3 measured on this machine, plus two found here: dot products
// are not inlined (a literal length makes LLVM unroll them into 128-bit shuffles), and fp16 block
// scales are converted with integer operations (the scalar conversion's false dependency chained
// every block to the last one). The q8_0 and q4_0 dot products are in QuantisedDotHelpers.swift.

extension SwiftEmitter {
    /// The prefetch module's import (KernelLibrary.prefetchModule, on the runtime's -I path).
    static let prefetchImport = "#if KVPLAN_PREFETCH\nimport KVPlanPrefetch\n#endif\n"
    /// The x86 intrinsics under KVPLAN_AVX2, in every generated Kernels.swift: the integer paths and
    /// the lane helpers' max and min call them.
    static let intrinsicsImport = "#if KVPLAN_AVX2\nimport _Builtin_intrinsics.intel\n#endif\n"

    static let helpers = workerPool + """
    /// Asks for the `n` bytes at `p` to be brought into cache (one `prefetcht0` per 64 bytes; a
    /// prefetch never faults, so `p` may point past the data). Without KVPLAN_PREFETCH (sources
    /// compiled as plain Swift) it does nothing.
    @inline(__always)
    func prefetchBytes(_ p: UnsafeRawPointer, _ n: Int) {
    #if KVPLAN_PREFETCH
        var i = 0
        while i < n { kvplan_prefetch(p + i); i &+= 64 }
    #endif
    }

    /// prefetchBytes into the second-level cache only (`prefetcht1`): for data wanted a while
    /// later, which would crowd the first level's working set.
    @inline(__always)
    func prefetchBytesL2(_ p: UnsafeRawPointer, _ n: Int) {
    #if KVPLAN_PREFETCH
        var i = 0
        while i < n { kvplan_prefetch_l2(p + i); i &+= 64 }
    #endif
    }

    /// Asks for the 64-byte line holding `p` (`prefetcht0`), for kernels that spread their
    /// prefetches over their loop instead of issuing them in a burst; a no-op without KVPLAN_PREFETCH.
    @inline(__always)
    func prefetchLine(_ p: UnsafeRawPointer) {
    #if KVPLAN_PREFETCH
        kvplan_prefetch(p)
    #endif
    }

    /// prefetchLine into the second-level cache only (`prefetcht1`).
    @inline(__always)
    func prefetchLineL2(_ p: UnsafeRawPointer) {
    #if KVPLAN_PREFETCH
        kvplan_prefetch_l2(p)
    #endif
    }

    /// Value `i` of a run of ggml q8_0 / q4_0 blocks (`nibbles`): the rows an embedding lookup
    /// gathered from a quantised table, decoded one value at a time (one row per token).
    @inline(__always)
    func blockValue(_ p: UnsafeRawPointer, _ i: Int, nibbles: Bool) -> Float {
        let block = i &>> 5, j = i & 31
        if nibbles {
            let at = block &* 18, byte = p.load(fromByteOffset: at &+ 2 &+ (j & 15), as: UInt8.self)
            return Float(Int(j < 16 ? byte & 15 : byte &>> 4) &- 8) * blockScale(p + at)
        }
        let at = block &* 34
        return Float(p.load(fromByteOffset: at &+ 2 &+ j, as: Int8.self)) * blockScale(p + at)
    }

    /// Not inlined on purpose: with the length a literal at the call site, LLVM unrolls this loop
    /// completely and re-vectorises it into 128-bit shuffles — 10× slower (measured: 8 vs 72 GB/s).
    @inline(never)
    func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        var i = 0
        while i &+ 32 <= n {
            s0.addProduct(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self), UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self))
            s1.addProduct(UnsafeRawPointer(x + (i &+ 8)).loadUnaligned(as: SIMD8<Float>.self), UnsafeRawPointer(y + (i &+ 8)).loadUnaligned(as: SIMD8<Float>.self))
            s2.addProduct(UnsafeRawPointer(x + (i &+ 16)).loadUnaligned(as: SIMD8<Float>.self), UnsafeRawPointer(y + (i &+ 16)).loadUnaligned(as: SIMD8<Float>.self))
            s3.addProduct(UnsafeRawPointer(x + (i &+ 24)).loadUnaligned(as: SIMD8<Float>.self), UnsafeRawPointer(y + (i &+ 24)).loadUnaligned(as: SIMD8<Float>.self))
            i &+= 32
        }
        var s = ((s0 + s1) + (s2 + s3)).sum()
        while i < n { s += x[i] * y[i]; i &+= 1 }
        return s
    }

    /// Weight rows stored as f16: x·row over `n` values (F16C converts 8 at a time).
    @inline(never)
    func dotF16(_ x: UnsafePointer<Float>, _ w: UnsafeRawPointer, _ n: Int) -> Float {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        @inline(__always) func wv(_ j: Int) -> SIMD8<Float> { SIMD8<Float>(w.loadUnaligned(fromByteOffset: j &* 2, as: SIMD8<Float16>.self)) }
        @inline(__always) func xv(_ j: Int) -> SIMD8<Float> { UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self) }
        var i = 0
        while i &+ 32 <= n {
            s0.addProduct(xv(i), wv(i)); s1.addProduct(xv(i &+ 8), wv(i &+ 8))
            s2.addProduct(xv(i &+ 16), wv(i &+ 16)); s3.addProduct(xv(i &+ 24), wv(i &+ 24))
            i &+= 32
        }
        var s = ((s0 + s1) + (s2 + s3)).sum()
        while i < n { s += x[i] * half(w, i); i &+= 1 }
        return s
    }

    /// Weight rows stored as bf16: x·row over `n` values (a bf16 is the top half of an f32).
    @inline(never)
    func dotBF16(_ x: UnsafePointer<Float>, _ w: UnsafeRawPointer, _ n: Int) -> Float {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        @inline(__always) func wv(_ j: Int) -> SIMD8<Float> {
            unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: w.loadUnaligned(fromByteOffset: j &* 2, as: SIMD8<UInt16>.self)) &<< 16, to: SIMD8<Float>.self)
        }
        @inline(__always) func xv(_ j: Int) -> SIMD8<Float> { UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self) }
        var i = 0
        while i &+ 32 <= n {
            s0.addProduct(xv(i), wv(i)); s1.addProduct(xv(i &+ 8), wv(i &+ 8))
            s2.addProduct(xv(i &+ 16), wv(i &+ 16)); s3.addProduct(xv(i &+ 24), wv(i &+ 24))
            i &+= 32
        }
        var s = ((s0 + s1) + (s2 + s3)).sum()
        while i < n { s += x[i] * bfloat(w, i); i &+= 1 }
        return s
    }

    /// An fp16 block scale as f32, converted with integer operations: the scalar x86 conversion
    /// (vpinsrw + vcvtph2ps) merges into a live register and chained every block to the previous
    /// block's accumulator (measured: 7.8 vs 15 GB/s).
    @inline(__always)
    func blockScale(_ p: UnsafeRawPointer) -> Float {
        let h = UInt32(p.loadUnaligned(as: UInt16.self))
        let magnitude = Float(bitPattern: (h & 0x7FFF) &<< 13) * 0x1p112
        return Float(bitPattern: magnitude.bitPattern | ((h & 0x8000) &<< 16))
    }

    /// y[0..<n] += a × x[0..<n] (a row of a [K, N] weight into the output; not inlined, as dot).
    @inline(never)
    func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        let av = SIMD8<Float>(repeating: a)
        var i = 0
        while i &+ 8 <= n {
            var v = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            v.addProduct(av, UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self))
            UnsafeMutableRawPointer(y + i).storeBytes(of: v, as: SIMD8<Float>.self)
            i &+= 8
        }
        while i < n { y[i] += a * x[i]; i &+= 1 }
    }

    /// Element `i` of a bf16 array at `p`, as f32.
    @inline(__always)
    func bfloat(_ p: UnsafeRawPointer, _ i: Int) -> Float {
        Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: i &<< 1, as: UInt16.self)) &<< 16)
    }

    /// Element `i` of an fp16 array at `p`, as f32.
    @inline(__always)
    func half(_ p: UnsafeRawPointer, _ i: Int) -> Float {
        Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: i &<< 1, as: UInt16.self)))
    }

    """
}
