// The q4_0 and q8_0 GEMVs over weights stored as `WeightLayout.q4_0x16` / `q8_0x16` (sixteen
// rows interleaved block by block, KVQuant/WeightLayout.swift): `dotQ4Group16` / `dotQ8Group16`
// multiply one group of 16 rows by the quantised activation row and write the 16 sums.
//
// Rationale. In the row-major layout every row's block pair needs its own load, two word permutes,
// a scale conversion and a horizontal sum at the end (Q4PairKernel.swift): nine AVX-512
// instructions per row and 64 values, 17–19 GB/s in L2. With 16 rows interleaved, lane r of every
// vector belongs to row r, so per block of 32 values and 16 rows the kernel issues
//   4 loads of 64 nibble bytes, 8 ANDs (low nibbles; high nibbles kept in place, i.e. ×16),
//   8 `vpdpbusd` against activation words broadcast from memory (bytes 4i…4i+3 pair with the low
//   nibbles, bytes 16 + 4i… with the high ones — ggml's nibble order, kept by the layout),
//   1 shift and 1 add (the high sums ÷16, exact: they are multiples of 16),
//   1 `vcvtph2ps` of the 16 rows' scales, 1 multiply by the activation scale, 1 convert, 1 FMA
// — 1.4 instructions per row and 32 values, and the 16 lanes are the 16 results: nothing to
// reduce. Each row's −8·Σx offset starts the low chain (QuantisedRow.sums). Measured in a harness
// on this machine: 74–82 GB/s in L2 against 18–22 for the row-major kernel, 31.7 against 10.5
// GB/s streamed from DRAM (a 28672×4096 weight) — the interleaved weight is one sequential stream.
//
// Paths. AVX-512 without VNNI uses `vpmaddubsw` + `vpmaddwd` on shifted nibbles; AVX2 (with or
// without AVX-VNNI) runs the 16 rows as two 8-lane halves. Every path forms the same exact
// Int32 sums and then the same f32 operations lane by lane (scale product, convert, FMA, in block
// order), so all x86 paths are bit-identical (EveryKernelTests). The portable path computes in
// f32 over the quantised row's restored values, like the other portable dot products.
//
// q8_0 the same way: per block 8 loads of 64 code bytes, each XORed with 0x80 (code + 128 as an
// unsigned byte) into 8 `vpdpbusd` in two chains, the first starting from −128·Σx (16 × the q4_0
// offset) to take the 128s back out. Without AVX-512 VNNI (the XOR trick's pairs would saturate
// `vpmaddubsw`) the 16 rows go as two AVX2 halves with the sign trick, |w| × x·sign(w), as the
// row-major q8_0 products do: the same exact Int32 sums, so bit-identical again.

extension SwiftEmitter {
    /// `dotQ4Group16` in every path, appended to Kernels.swift when a kernel calls it.
    static let q4GroupKernel = """
    #if KVPLAN_AVX512
    /// Sixteen q4_0 rows stored as q4_0x16 from `w` (one group: per block 16 fp16 scales, then 4 ×
    /// 64 nibble bytes) times the quantised row over `n` values: the 16 sums into y[0..<16].
    @inline(never)
    func dotQ4Group16(_ q: QuantisedRow, _ w: UnsafeRawPointer, _ n: Int, _ y: UnsafeMutablePointer<Float>) {
        var f = _mm512_setzero_ps()
        let low = _mm512_set1_epi8(0x0F)
        var p = w, b = 0
        while b < n &>> 5 {
            let x = UnsafeRawPointer(q.codes + b &* 32)
            @inline(__always) func words(_ at: Int) -> __m512i { _mm512_set1_epi32(x.loadUnaligned(fromByteOffset: at, as: Int32.self)) }
            let v0 = _mm512_loadu_si512(p + 32), v1 = _mm512_loadu_si512(p + 96), v2 = _mm512_loadu_si512(p + 160), v3 = _mm512_loadu_si512(p + 224)
    #if KVPLAN_AVX512VNNI
            let high = _mm512_set1_epi8(-16)
            var lo = _mm512_dpbusd_epi32(_mm512_set1_epi32(q.sums[b]), _mm512_and_si512(v0, low), words(0))
            var hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v0, high), words(16))
            lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v1, low), words(4))
            hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(v1, high), words(20))
            lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v2, low), words(8))
            hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(v2, high), words(24))
            lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v3, low), words(12))
            hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(v3, high), words(28))
            let sum = _mm512_add_epi32(lo, _mm512_srai_epi32(hi, 4))
    #else
            // Unsigned nibble × signed code pairs stay within Int16 (2·15·127).
            @inline(__always) func dot(_ u: __m512i, _ s: __m512i) -> __m512i { _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)) }
            @inline(__always) func high(_ v: __m512i) -> __m512i { _mm512_and_si512(_mm512_srli_epi16(v, 4), low) }
            let lo = _mm512_add_epi32(_mm512_add_epi32(dot(_mm512_and_si512(v0, low), words(0)), dot(_mm512_and_si512(v1, low), words(4))),
                                      _mm512_add_epi32(dot(_mm512_and_si512(v2, low), words(8)), dot(_mm512_and_si512(v3, low), words(12))))
            let hi = _mm512_add_epi32(_mm512_add_epi32(dot(high(v0), words(16)), dot(high(v1), words(20))),
                                      _mm512_add_epi32(dot(high(v2), words(24)), dot(high(v3), words(28))))
            let sum = _mm512_add_epi32(_mm512_add_epi32(lo, hi), _mm512_set1_epi32(q.sums[b]))
    #endif
            let d = _mm512_mul_ps(_mm512_cvtph_ps(unsafeBitCast(p.loadUnaligned(as: SIMD16<UInt16>.self), to: __m256i.self)), _mm512_set1_ps(q.scales[b]))
            f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), d, f)
            p += 288
            b &+= 1
        }
        UnsafeMutableRawPointer(y).storeBytes(of: unsafeBitCast(f, to: SIMD16<Float>.self), as: SIMD16<Float>.self)
    }
    #elseif KVPLAN_AVX2
    /// Sixteen q4_0 rows stored as q4_0x16 from `w` times the quantised row over `n` values, as two
    /// halves of eight rows (the AVX-512 path's lanes 0–7 and 8–15): the 16 sums into y[0..<16].
    @inline(never)
    func dotQ4Group16(_ q: QuantisedRow, _ w: UnsafeRawPointer, _ n: Int, _ y: UnsafeMutablePointer<Float>) {
        var f0 = SIMD8<Float>(), f1 = SIMD8<Float>()
        let low = _mm256_set1_epi8(0x0F)
        @inline(__always) func bytes(_ p: UnsafeRawPointer) -> __m256i { unsafeBitCast(p.loadUnaligned(as: SIMD32<UInt8>.self), to: __m256i.self) }
        @inline(__always) func high(_ v: __m256i) -> __m256i { _mm256_and_si256(_mm256_srli_epi16(v, 4), low) }
        var p = w, b = 0
        while b < n &>> 5 {
            let x = UnsafeRawPointer(q.codes + b &* 32)
            @inline(__always) func words(_ at: Int) -> __m256i { _mm256_set1_epi32(x.loadUnaligned(fromByteOffset: at, as: Int32.self)) }
            /// The Int32 sums of the rows whose lanes start at byte `half` (0: rows 0–7, 32: rows 8–15) of each vector.
            @inline(__always) func sums(_ half: Int) -> __m256i {
                let v0 = bytes(p + (32 &+ half)), v1 = bytes(p + (96 &+ half)), v2 = bytes(p + (160 &+ half)), v3 = bytes(p + (224 &+ half))
                let lo = _mm256_add_epi32(_mm256_add_epi32(unsignedDot32(_mm256_and_si256(v0, low), words(0)), unsignedDot32(_mm256_and_si256(v1, low), words(4))),
                                          _mm256_add_epi32(unsignedDot32(_mm256_and_si256(v2, low), words(8)), unsignedDot32(_mm256_and_si256(v3, low), words(12))))
                let hi = _mm256_add_epi32(_mm256_add_epi32(unsignedDot32(high(v0), words(16)), unsignedDot32(high(v1), words(20))),
                                          _mm256_add_epi32(unsignedDot32(high(v2), words(24)), unsignedDot32(high(v3), words(28))))
                return _mm256_add_epi32(_mm256_add_epi32(lo, hi), _mm256_set1_epi32(q.sums[b]))
            }
            f0.addProduct(unsafeBitCast(_mm256_cvtepi32_ps(sums(0)), to: SIMD8<Float>.self), groupScales8(p, 0, q.scales[b]))
            f1.addProduct(unsafeBitCast(_mm256_cvtepi32_ps(sums(32)), to: SIMD8<Float>.self), groupScales8(p, 16, q.scales[b]))
            p += 288
            b &+= 1
        }
        UnsafeMutableRawPointer(y).storeBytes(of: f0, as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(y + 8).storeBytes(of: f1, as: SIMD8<Float>.self)
    }
    #else
    /// Sixteen q4_0 rows stored as q4_0x16 from `w` times the quantised row over `n` values, in f32
    /// over the row's restored values: the 16 sums into y[0..<16].
    @inline(never)
    func dotQ4Group16(_ q: QuantisedRow, _ w: UnsafeRawPointer, _ n: Int, _ y: UnsafeMutablePointer<Float>) {
        var f = SIMD16<Float>()
        var p = w, b = 0
        while b < n &>> 5 {
            let x = q.values + b &* 32
            var s = SIMD16<Float>()
            for i in 0..<4 {
                for t in 0..<4 {
                    var codes = SIMD16<UInt8>()
                    for r in 0..<16 { codes[r] = p.load(fromByteOffset: 32 &+ 64 &* i &+ 4 &* r &+ t, as: UInt8.self) }
                    s += SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: codes & 15) &- 8) * x[4 &* i &+ t]
                    s += SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: codes &>> 4) &- 8) * x[16 &+ 4 &* i &+ t]
                }
            }
            var d = SIMD16<Float>()
            for r in 0..<16 { d[r] = blockScale(p + 2 &* r) }
            f.addProduct(s, d)
            p += 288
            b &+= 1
        }
        UnsafeMutableRawPointer(y).storeBytes(of: f, as: SIMD16<Float>.self)
    }
    #endif

    """
}

extension SwiftEmitter {
    /// `dotQ8Group16` in every path, appended to Kernels.swift when a kernel calls it.
    static let q8GroupKernel = """
    #if KVPLAN_AVX512VNNI
    /// Sixteen q8_0 rows stored as q8_0x16 from `w` (one group: per block 16 fp16 scales, then 8 ×
    /// 64 code bytes) times the quantised row over `n` values: the 16 sums into y[0..<16].
    @inline(never)
    func dotQ8Group16(_ q: QuantisedRow, _ w: UnsafeRawPointer, _ n: Int, _ y: UnsafeMutablePointer<Float>) {
        var f = _mm512_setzero_ps()
        let unsigned = _mm512_set1_epi8(-128)
        var p = w, b = 0
        while b < n &>> 5 {
            let x = UnsafeRawPointer(q.codes + b &* 32)
            @inline(__always) func words(_ at: Int) -> __m512i { _mm512_set1_epi32(x.loadUnaligned(fromByteOffset: at, as: Int32.self)) }
            @inline(__always) func codes(_ i: Int) -> __m512i { _mm512_xor_si512(_mm512_loadu_si512(p + (32 &+ 64 &* i)), unsigned) }
            // Σ (w + 128)·x − 128·Σx, with −128·Σx = 16 × the block's q4_0 offset −8·Σx.
            var a = _mm512_dpbusd_epi32(_mm512_set1_epi32(q.sums[b] &<< 4), codes(0), words(0))
            var c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes(1), words(4))
            a = _mm512_dpbusd_epi32(a, codes(2), words(8))
            c = _mm512_dpbusd_epi32(c, codes(3), words(12))
            a = _mm512_dpbusd_epi32(a, codes(4), words(16))
            c = _mm512_dpbusd_epi32(c, codes(5), words(20))
            a = _mm512_dpbusd_epi32(a, codes(6), words(24))
            c = _mm512_dpbusd_epi32(c, codes(7), words(28))
            let d = _mm512_mul_ps(_mm512_cvtph_ps(unsafeBitCast(p.loadUnaligned(as: SIMD16<UInt16>.self), to: __m256i.self)), _mm512_set1_ps(q.scales[b]))
            f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a, c)), d, f)
            p += 544
            b &+= 1
        }
        UnsafeMutableRawPointer(y).storeBytes(of: unsafeBitCast(f, to: SIMD16<Float>.self), as: SIMD16<Float>.self)
    }
    #elseif KVPLAN_AVX2
    /// Sixteen q8_0 rows stored as q8_0x16 from `w` times the quantised row over `n` values, as two
    /// halves of eight rows (|w| × x·sign(w)): the 16 sums into y[0..<16].
    @inline(never)
    func dotQ8Group16(_ q: QuantisedRow, _ w: UnsafeRawPointer, _ n: Int, _ y: UnsafeMutablePointer<Float>) {
        var f0 = SIMD8<Float>(), f1 = SIMD8<Float>()
        var p = w, b = 0
        while b < n &>> 5 {
            let x = UnsafeRawPointer(q.codes + b &* 32)
            /// The Int32 sums of the rows whose lanes start at byte `half` (0: rows 0–7, 32: rows 8–15) of each vector.
            @inline(__always) func sums(_ half: Int) -> __m256i {
                @inline(__always) func product(_ i: Int) -> __m256i {
                    let v = unsafeBitCast(p.loadUnaligned(fromByteOffset: 32 &+ 64 &* i &+ half, as: SIMD32<Int8>.self), to: __m256i.self)
                    let xs = _mm256_set1_epi32(x.loadUnaligned(fromByteOffset: 4 &* i, as: Int32.self))
                    return unsignedDot32(_mm256_sign_epi8(v, v), _mm256_sign_epi8(xs, v))
                }
                return _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(product(0), product(1)), _mm256_add_epi32(product(2), product(3))),
                                        _mm256_add_epi32(_mm256_add_epi32(product(4), product(5)), _mm256_add_epi32(product(6), product(7))))
            }
            f0.addProduct(unsafeBitCast(_mm256_cvtepi32_ps(sums(0)), to: SIMD8<Float>.self), groupScales8(p, 0, q.scales[b]))
            f1.addProduct(unsafeBitCast(_mm256_cvtepi32_ps(sums(32)), to: SIMD8<Float>.self), groupScales8(p, 16, q.scales[b]))
            p += 544
            b &+= 1
        }
        UnsafeMutableRawPointer(y).storeBytes(of: f0, as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(y + 8).storeBytes(of: f1, as: SIMD8<Float>.self)
    }
    #else
    /// Sixteen q8_0 rows stored as q8_0x16 from `w` times the quantised row over `n` values, in f32
    /// over the row's restored values: the 16 sums into y[0..<16].
    @inline(never)
    func dotQ8Group16(_ q: QuantisedRow, _ w: UnsafeRawPointer, _ n: Int, _ y: UnsafeMutablePointer<Float>) {
        var f = SIMD16<Float>()
        var p = w, b = 0
        while b < n &>> 5 {
            let x = q.values + b &* 32
            var s = SIMD16<Float>()
            for i in 0..<8 {
                for t in 0..<4 {
                    var codes = SIMD16<Int8>()
                    for r in 0..<16 { codes[r] = p.load(fromByteOffset: 32 &+ 64 &* i &+ 4 &* r &+ t, as: Int8.self) }
                    s += SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: codes)) * x[4 &* i &+ t]
                }
            }
            var d = SIMD16<Float>()
            for r in 0..<16 { d[r] = blockScale(p + 2 &* r) }
            f.addProduct(s, d)
            p += 544
            b &+= 1
        }
        UnsafeMutableRawPointer(y).storeBytes(of: f, as: SIMD16<Float>.self)
    }
    #endif

    """
}
