// The GEMV dot products over q8_0 and q4_0 weight rows, emitted into a Kernels.swift that has such
// weights.
//
// Rationale. Dequantising the weights in f32 (codes widened, converted, scaled, FMA'd) is
// compute-bound: 15–17 GB/s for q8_0 and 5–8 GB/s for q4_0 on this machine, where one core
// streams 16–20 GB/s (Docs/benchmarks.md) — q4_0 missed the 60%-of-copy-bandwidth target. ggml's
// way past that is used here: the activation row is quantised once per GEMV to int8 per block of
// 32 (scale max|x|/127, kept in f32 — ggml rounds it to fp16) and each block's dot product is
// done in 8-bit integer multiply-adds: `vpmaddubsw` (u8 × s8 → pairs of s16) then `vpmaddwd`
// with ones (→ s32), one convert and one FMA with d_w·d_x per 32 values. LLVM does not produce
// these instructions from Swift's SIMD integer types, so this path calls them through Clang's
// `_Builtin_intrinsics.intel` module, compiled only when the runtime defines KVPLAN_AVX2 (it
// does with -target-cpu haswell; without AVX2 enabled those calls crash the compiler).
// Measured in a harness (4096 columns, one core): q8_0 17 → 27–29 GB/s, q4_0 7.7 → 13–16 GB/s.
// q8_0 codes are in [−127, 127], so |w|·x pairs stay within s16 (2·127·127) with the usual sign
// trick (|w| × x·sign(w)); q4_0 multiplies the unsigned nibbles directly and subtracts 8·Σx per
// block from a vector precomputed per row (`offsets`), two instructions fewer than re-signing.
//
// Without KVPLAN_AVX2 the same products are computed in f32 over the quantised-and-restored row
// (`values`), so both paths — and the reference interpreter, which rounds x the same way
// (KVQuant.ActivationQuantisation) — agree up to summation order.

extension SwiftEmitter {
    /// True when `kernels` call the q8_0 / q4_0 dot products or round rows to int8 themselves
    /// (the integer key products of decode attention).
    static func usesQuantisedDots(_ kernels: String) -> Bool {
        kernels.contains("dotQ8(") || kernels.contains("dotQ4(") || kernels.contains("dotQ4Group16(") || kernels.contains("dotQ8Group16(") || kernels.contains("quantiseRow(")
    }

    static let quantisedDotHelpers = """
    /// An activation row as the q8_0 / q4_0 dot products read it: int8 codes per block of 32 with
    /// the f32 scale max|x|/127, rounded to nearest even (the reference interpreter rounds x the
    /// same way, so both compute the same products).
    struct QuantisedRow {
        /// code·scale per value (the portable dot products read these).
        var values: UnsafeMutablePointer<Float>
        /// Per block, eight Int32 lanes summing to 8·Σcodes (q4_0's offset of 8, subtracted once per block).
        var offsets: UnsafeMutablePointer<Int32>
        /// One scale per block of 32.
        var scales: UnsafeMutablePointer<Float>
        /// The int8 codes.
        var codes: UnsafeMutablePointer<Int8>
        /// Per block, −8·Σcodes (q4_0's offset as one Int32, for the interleaved-row products).
        var sums: UnsafeMutablePointer<Int32>
    }

    /// Runs body with scratch for a quantised row of `n` values (n a multiple of 32), on the stack when small.
    @inline(__always)
    func withQuantisedRow(_ n: Int, _ body: (QuantisedRow) -> Void) {
        let blocks = n &>> 5
        withUnsafeTemporaryAllocation(byteCount: n &* 5 &+ blocks &* 40, alignment: 32) { raw in
            let base = raw.baseAddress!
            body(QuantisedRow(values: base.bindMemory(to: Float.self, capacity: n),
                              offsets: (base + n &* 4).bindMemory(to: Int32.self, capacity: blocks &* 8),
                              scales: (base + (n &* 4 &+ blocks &* 32)).bindMemory(to: Float.self, capacity: blocks),
                              codes: (base + (n &* 4 &+ blocks &* 36)).bindMemory(to: Int8.self, capacity: n),
                              sums: (base + (n &* 5 &+ blocks &* 36)).bindMemory(to: Int32.self, capacity: blocks)))
        }
    }

    /// Quantises x[0..<n] (n a multiple of 32) into q.
    @inline(never)
    func quantiseRow(_ x: UnsafePointer<Float>, _ n: Int, _ q: QuantisedRow) {
        let magnitude = SIMD8<UInt32>(repeating: 0x7FFF_FFFF)
        @inline(__always) func abs8(_ v: SIMD8<Float>) -> SIMD8<Float> { unsafeBitCast(unsafeBitCast(v, to: SIMD8<UInt32>.self) & magnitude, to: SIMD8<Float>.self) }
        var b = 0
        while b < n &>> 5 {
            let p = UnsafeRawPointer(x + b &* 32)
            let v0 = p.loadUnaligned(as: SIMD8<Float>.self), v1 = p.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
            let v2 = p.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self), v3 = p.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self)
            let m = lanesMax(lanesMax(abs8(v0), abs8(v1)), lanesMax(abs8(v2), abs8(v3)))
            var amax: Float = 0
            for i in 0..<8 where m[i] > amax { amax = m[i] }
            let d = amax / 127, inverse: Float = d == 0 ? 0 : 1 / d
            q.scales[b] = d
            let r0 = (v0 * inverse).rounded(.toNearestOrEven), r1 = (v1 * inverse).rounded(.toNearestOrEven)
            let r2 = (v2 * inverse).rounded(.toNearestOrEven), r3 = (v3 * inverse).rounded(.toNearestOrEven)
    #if KVPLAN_AVX2
            @inline(__always) func i32(_ v: SIMD8<Float>) -> __m256i { _mm256_cvtps_epi32(unsafeBitCast(v, to: __m256.self)) }
            let low = _mm256_packs_epi32(i32(r0), i32(r1)), high = _mm256_packs_epi32(i32(r2), i32(r3))
            let codes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(low, high), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
            UnsafeMutableRawPointer(q.codes + b &* 32).storeBytes(of: unsafeBitCast(codes, to: SIMD32<Int8>.self), as: SIMD32<Int8>.self)
            let offsets = unsignedDot32(_mm256_set1_epi8(8), codes)
            UnsafeMutableRawPointer(q.offsets + b &* 8).storeBytes(of: unsafeBitCast(offsets, to: SIMD8<Int32>.self), as: SIMD8<Int32>.self)
            q.sums[b] = 0 &- unsafeBitCast(offsets, to: SIMD8<Int32>.self).wrappedSum()
    #else
            let out = UnsafeMutableRawPointer(q.values + b &* 32), dv = SIMD8<Float>(repeating: d)
            out.storeBytes(of: r0 * dv, as: SIMD8<Float>.self)
            out.storeBytes(of: r1 * dv, toByteOffset: 32, as: SIMD8<Float>.self)
            out.storeBytes(of: r2 * dv, toByteOffset: 64, as: SIMD8<Float>.self)
            out.storeBytes(of: r3 * dv, toByteOffset: 96, as: SIMD8<Float>.self)
    #endif
            b &+= 1
        }
    }

    #if KVPLAN_AVX2
    /// Σ w·x over 32 int8 pairs as eight Int32 lane sums converted to f32 (|w| × x·sign(w), so the
    /// unsigned-by-signed multiply-add applies; |w| ≤ 127 keeps each pair within Int16).
    @inline(__always)
    func signedDot32(_ w: __m256i, _ x: __m256i) -> SIMD8<Float> {
        return unsafeBitCast(_mm256_cvtepi32_ps(unsignedDot32(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))), to: SIMD8<Float>.self)
    }

    /// The fp16 scales of eight rows of an interleaved 16-row group (bytes `half`…`half` + 15 of
    /// the group's block) times the activation block's `scale`: half a block of the AVX2 group kernels.
    @inline(__always)
    func groupScales8(_ p: UnsafeRawPointer, _ half: Int, _ scale: Float) -> SIMD8<Float> {
        unsafeBitCast(_mm256_cvtph_ps(unsafeBitCast(p.loadUnaligned(fromByteOffset: half, as: SIMD8<UInt16>.self), to: __m128i.self)), to: SIMD8<Float>.self)
            * SIMD8<Float>(repeating: scale)
    }

    /// Σ u·s over 32 (u8, s8) pairs as eight Int32 lane sums (each of four neighbouring pairs):
    /// `vpdpbusd` with AVX-VNNI, `vpmaddubsw` + `vpmaddwd` without (callers keep pairs within Int16).
    @inline(__always)
    func unsignedDot32(_ u: __m256i, _ s: __m256i) -> __m256i {
    #if KVPLAN_AVXVNNI
        return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
    #else
        return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    #endif
    }

    /// Σ (nibble − 8)·x over one q4_0 block's 32 values (low nibbles first) as eight f32 lane sums.
    @inline(__always)
    func nibbleDot32(_ p: UnsafeRawPointer, _ x: __m256i, _ offset: __m256i) -> SIMD8<Float> {
        let bytes = unsafeBitCast(p.loadUnaligned(as: SIMD16<UInt8>.self), to: __m128i.self)
        let nibbles = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes), _mm256_set1_epi8(15))
        return unsafeBitCast(_mm256_cvtepi32_ps(_mm256_sub_epi32(unsignedDot32(nibbles, x), offset)), to: SIMD8<Float>.self)
    }

    /// Weight rows stored as ggml q8_0 blocks (fp16 d, 32 int8 codes): x·row over `n` values, a
    /// multiple of 32, in 8-bit integer multiply-adds against the quantised row.
    @inline(never)
    func dotQ8(_ q: QuantisedRow, _ w: UnsafeRawPointer, _ n: Int) -> Float {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        @inline(__always) func x(_ b: Int) -> __m256i { unsafeBitCast(UnsafeRawPointer(q.codes + b &* 32).loadUnaligned(as: SIMD32<Int8>.self), to: __m256i.self) }
        @inline(__always) func codes(_ p: UnsafeRawPointer) -> __m256i { unsafeBitCast(p.loadUnaligned(as: SIMD32<Int8>.self), to: __m256i.self) }
        @inline(__always) func d(_ p: UnsafeRawPointer, _ b: Int) -> SIMD8<Float> { SIMD8<Float>(repeating: blockScale(p) * q.scales[b]) }
        let blocks = n &>> 5
        var b = 0, p = w
        while b &+ 4 <= blocks {
            s0.addProduct(d(p, b), signedDot32(codes(p + 2), x(b)))
            s1.addProduct(d(p + 34, b &+ 1), signedDot32(codes(p + 36), x(b &+ 1)))
            s2.addProduct(d(p + 68, b &+ 2), signedDot32(codes(p + 70), x(b &+ 2)))
            s3.addProduct(d(p + 102, b &+ 3), signedDot32(codes(p + 104), x(b &+ 3)))
            b &+= 4; p += 136
        }
        while b < blocks { s0.addProduct(d(p, b), signedDot32(codes(p + 2), x(b))); b &+= 1; p += 34 }
        return ((s0 + s1) + (s2 + s3)).sum()
    }

    /// Weight rows stored as ggml q4_0 blocks (fp16 d, 16 bytes: values 0–15 in the low nibbles,
    /// 16–31 in the high; value = (nibble − 8)·d): x·row over `n` values, a multiple of 32, in
    /// 8-bit integer multiply-adds against the quantised row.
    @inline(never)
    func dotQ4(_ q: QuantisedRow, _ w: UnsafeRawPointer, _ n: Int) -> Float {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        @inline(__always) func x(_ b: Int) -> __m256i { unsafeBitCast(UnsafeRawPointer(q.codes + b &* 32).loadUnaligned(as: SIMD32<Int8>.self), to: __m256i.self) }
        @inline(__always) func o(_ b: Int) -> __m256i { unsafeBitCast(UnsafeRawPointer(q.offsets + b &* 8).loadUnaligned(as: SIMD8<Int32>.self), to: __m256i.self) }
        @inline(__always) func d(_ p: UnsafeRawPointer, _ b: Int) -> SIMD8<Float> { SIMD8<Float>(repeating: blockScale(p) * q.scales[b]) }
        let blocks = n &>> 5
        var b = 0, p = w
    #if KVPLAN_AVX512
        // Four blocks per step as two 512-bit block pairs (Q4PairKernel): a's lanes are s0's and
        // s1's, c's are s2's and s3's, with the same products and FMAs in the same order.
        var a = _mm512_setzero_ps(), c = _mm512_setzero_ps()
        while b &+ 4 <= blocks {
            let (d0, v0) = q4PairProducts(p, whole: true, roomy: true, q4PairActivations(q, b, whole: true))
            let (d1, v1) = q4PairProducts(p + 36, whole: true, roomy: b &+ 6 <= blocks, q4PairActivations(q, b &+ 2, whole: true))
            a = _mm512_fmadd_ps(d0, v0, a)
            c = _mm512_fmadd_ps(d1, v1, c)
            b &+= 4; p += 72
        }
        (s0, s1) = q4PairLanes(a)
        (s2, s3) = q4PairLanes(c)
    #else
        while b &+ 4 <= blocks {
            s0.addProduct(d(p, b), nibbleDot32(p + 2, x(b), o(b)))
            s1.addProduct(d(p + 18, b &+ 1), nibbleDot32(p + 20, x(b &+ 1), o(b &+ 1)))
            s2.addProduct(d(p + 36, b &+ 2), nibbleDot32(p + 38, x(b &+ 2), o(b &+ 2)))
            s3.addProduct(d(p + 54, b &+ 3), nibbleDot32(p + 56, x(b &+ 3), o(b &+ 3)))
            b &+= 4; p += 72
        }
    #endif
        while b < blocks { s0.addProduct(d(p, b), nibbleDot32(p + 2, x(b), o(b))); b &+= 1; p += 18 }
        return ((s0 + s1) + (s2 + s3)).sum()
    }
    /// Two weight rows `rowBytes` apart (q8_0 when `nibbles` is false, q4_0 when true): x·row for
    /// both, each activation block loaded once for the two rows. Per row a call, its loop set-up
    /// and the final reductions cost as much as a few blocks at tiny-llama's 256–704 columns.
    @inline(__always)
    func dotPair(_ q: QuantisedRow, _ w: UnsafeRawPointer, rowBytes: Int, _ n: Int, nibbles: Bool) -> (Float, Float) {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), b0 = SIMD8<Float>(), b1 = SIMD8<Float>()
        let blockBytes = nibbles ? 18 : 34
        @inline(__always) func x(_ b: Int) -> __m256i { unsafeBitCast(UnsafeRawPointer(q.codes + b &* 32).loadUnaligned(as: SIMD32<Int8>.self), to: __m256i.self) }
        @inline(__always) func o(_ b: Int) -> __m256i { unsafeBitCast(UnsafeRawPointer(q.offsets + b &* 8).loadUnaligned(as: SIMD8<Int32>.self), to: __m256i.self) }
        @inline(__always) func product(_ p: UnsafeRawPointer, _ b: Int, _ xb: __m256i, _ ob: __m256i) -> SIMD8<Float> {
            nibbles ? nibbleDot32(p + 2, xb, ob) : signedDot32(unsafeBitCast(p.loadUnaligned(fromByteOffset: 2, as: SIMD32<Int8>.self), to: __m256i.self), xb)
        }
        @inline(__always) func d(_ p: UnsafeRawPointer, _ s: Float) -> SIMD8<Float> { SIMD8<Float>(repeating: blockScale(p) * s) }
        @inline(__always) func h(_ p: UnsafeRawPointer) -> UInt32 { UInt32(p.loadUnaligned(as: UInt16.self)) }
        let blocks = n &>> 5
        var b = 0, p = w
        while b &+ 2 <= blocks {
            let x0 = x(b), x1 = x(b &+ 1)
            let o0 = nibbles ? o(b) : x0, o1 = nibbles ? o(b &+ 1) : x1
            let p1 = p + blockBytes, r0 = p + rowBytes, r1 = p + (rowBytes &+ blockBytes)
            // The four blocks' fp16 scales converted together, with integer operations (F16C's
            // scalar form merged each into a live register: every block waited for the last).
            let raw = SIMD4<UInt32>(h(p), h(p1), h(r0), h(r1))
            let magnitude = unsafeBitCast((raw & 0x7FFF) &<< 13, to: SIMD4<Float>.self) * 0x1p112
            let sx = SIMD2<Float>(q.scales[b], q.scales[b &+ 1])
            let ds = unsafeBitCast(unsafeBitCast(magnitude, to: SIMD4<UInt32>.self) | ((raw & 0x8000) &<< 16), to: SIMD4<Float>.self)
                * SIMD4<Float>(sx[0], sx[1], sx[0], sx[1])
            a0.addProduct(SIMD8<Float>(repeating: ds[0]), product(p, b, x0, o0))
            a1.addProduct(SIMD8<Float>(repeating: ds[1]), product(p1, b &+ 1, x1, o1))
            b0.addProduct(SIMD8<Float>(repeating: ds[2]), product(r0, b, x0, o0))
            b1.addProduct(SIMD8<Float>(repeating: ds[3]), product(r1, b &+ 1, x1, o1))
            b &+= 2; p += 2 &* blockBytes
        }
        if b < blocks {
            let x0 = x(b), o0 = nibbles ? o(b) : x0, s0 = q.scales[b]
            a0.addProduct(d(p, s0), product(p, b, x0, o0))
            b0.addProduct(d(p + rowBytes, s0), product(p + rowBytes, b, x0, o0))
        }
        return ((a0 + a1).sum(), (b0 + b1).sum())
    }

    /// Two q8_0 rows `rowBytes` apart: x·row for both (dotPair).
    @inline(never)
    func dotQ8Pair(_ q: QuantisedRow, _ w: UnsafeRawPointer, rowBytes: Int, _ n: Int) -> (Float, Float) { dotPair(q, w, rowBytes: rowBytes, n, nibbles: false) }

    #if KVPLAN_AVX512
    \(q4RowsAVX512)
    #else
    /// Two q4_0 rows `rowBytes` apart: x·row for both (dotPair).
    @inline(never)
    func dotQ4Pair(_ q: QuantisedRow, _ w: UnsafeRawPointer, rowBytes: Int, _ n: Int) -> (Float, Float) { dotPair(q, w, rowBytes: rowBytes, n, nibbles: true) }

    /// Eight q4_0 rows `rowBytes` apart: x·row for each into y[0..<8] (four dotQ4Pair).
    @inline(__always)
    func dotQ4Rows8(_ q: QuantisedRow, _ w: UnsafeRawPointer, rowBytes: Int, _ n: Int, _ y: UnsafeMutablePointer<Float>) {
        for i in stride(from: 0, to: 8, by: 2) { (y[i], y[i &+ 1]) = dotQ4Pair(q, w + rowBytes &* i, rowBytes: rowBytes, n) }
    }
    #endif
    #else
    /// Two weight rows `rowBytes` apart: x·row for both (the portable build calls the one-row products).
    @inline(never)
    func dotQ8Pair(_ q: QuantisedRow, _ w: UnsafeRawPointer, rowBytes: Int, _ n: Int) -> (Float, Float) { (dotQ8(q, w, n), dotQ8(q, w + rowBytes, n)) }

    /// Two q4_0 rows `rowBytes` apart: x·row for both (the portable build calls the one-row products).
    @inline(never)
    func dotQ4Pair(_ q: QuantisedRow, _ w: UnsafeRawPointer, rowBytes: Int, _ n: Int) -> (Float, Float) { (dotQ4(q, w, n), dotQ4(q, w + rowBytes, n)) }

    /// Eight q4_0 rows `rowBytes` apart: x·row for each into y[0..<8] (the portable build calls the one-row products).
    @inline(__always)
    func dotQ4Rows8(_ q: QuantisedRow, _ w: UnsafeRawPointer, rowBytes: Int, _ n: Int, _ y: UnsafeMutablePointer<Float>) {
        for i in 0..<8 { y[i] = dotQ4(q, w + rowBytes &* i, n) }
    }

    /// Weight rows stored as ggml q8_0 blocks: x·row over `n` values (a multiple of 32), in f32
    /// over the quantised row's values (x scaled by d so the codes go straight into the FMAs).
    @inline(never)
    func dotQ8(_ q: QuantisedRow, _ w: UnsafeRawPointer, _ n: Int) -> Float {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        @inline(__always) func codes(_ p: UnsafeRawPointer) -> SIMD8<Float> {
            SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: p.loadUnaligned(as: SIMD8<Int8>.self)))
        }
        var i = 0, p = w
        while i < n {
            let d = SIMD8<Float>(repeating: blockScale(p))
            let xb = UnsafeRawPointer(q.values + i)
            s0.addProduct(xb.loadUnaligned(as: SIMD8<Float>.self) * d, codes(p + 2))
            s1.addProduct(xb.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self) * d, codes(p + 10))
            s2.addProduct(xb.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self) * d, codes(p + 18))
            s3.addProduct(xb.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self) * d, codes(p + 26))
            p += 34
            i &+= 32
        }
        return ((s0 + s1) + (s2 + s3)).sum()
    }

    /// Weight rows stored as ggml q4_0 blocks: x·row over `n` values (a multiple of 32), in f32
    /// over the quantised row's values.
    @inline(never)
    func dotQ4(_ q: QuantisedRow, _ w: UnsafeRawPointer, _ n: Int) -> Float {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        @inline(__always) func codes(_ v: SIMD8<UInt8>) -> SIMD8<Float> { SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: v & 15) &- 8) }
        var i = 0, p = w
        while i < n {
            let d = SIMD8<Float>(repeating: blockScale(p))
            let xb = UnsafeRawPointer(q.values + i)
            let a = (p + 2).loadUnaligned(as: SIMD8<UInt8>.self), b = (p + 10).loadUnaligned(as: SIMD8<UInt8>.self)
            s0.addProduct(xb.loadUnaligned(as: SIMD8<Float>.self) * d, codes(a))
            s1.addProduct(xb.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self) * d, codes(b))
            s2.addProduct(xb.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self) * d, codes(a &>> 4))
            s3.addProduct(xb.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self) * d, codes(b &>> 4))
            p += 18
            i &+= 32
        }
        return ((s0 + s1) + (s2 + s3)).sum()
    }
    #endif

    """
}
