// The query's preparation for one 4-bit key group of 4 query heads at head_dim 128, in one pass
// with its block maxima reduced vertically.
//
// Rationale. Every key group (32 tokens) has its own channel scales, so KeyProductRounding's
// int8 query is made anew per group and per KV head: q_h[c]·s_c for 512 (head, channel) values,
// the bias Σ_c q_h[c]·z_c, the 16 block maxima, and the rounding. The two-pass path
// (scaleQueriesH4 writes q·s, roundQueries reads it back) reduces each block's maximum
// horizontally — 16 reductions of 8 shuffles and maxima, then scalar stores and reloads — sums
// the bias in 8-lane halves, and saturates with `vpmovsdb` (two µops per 16 codes); at 62 cycles
// per token and KV head the whole query preparation took about a quarter of the attention's time
// at L2 size (Docs/benchmarks.md). Here the 16 blocks' |q·s| maxima become one vector with
// 15 two-source permutes and maxima (a transpose-reduce: lane 4·h + b is block (h, b), already
// KeyProductRounding's block order), one division gives all 16 scales and one more their
// inverses, and four blocks' 64 codes are packed with `vpackssdw` + `vpacksswb` + `vpermd`.
// The codes and scales are bit-identical to the two-pass path's (the maximum is exact in any
// order, the divisions and products are the same IEEE operations, both saturate the same
// rounded Int32); the bias is summed in 16 lanes instead of 8, a different order of the same
// f32 products — within the reference's tolerance, which sums it in Double.
// AVX-512 VNNI only (the builds whose key products are 512-bit `vpdpbusd`); head counts that are
// a multiple of 4 call it once per 4 heads.

extension SwiftEmitter {
    /// True when the query for segment `s`'s integer key groups is prepared by `prepareQueriesH4`.
    static func fusedQueryPreparation(_ s: KVSegment, heads: Int, d: Int) -> Bool {
        integerKeys(s, d: d) && heads % 4 == 0 && d == 128
    }

    /// prepareQueriesH4.
    static let fusedQueryKernel = """

    #if KVPLAN_AVX512VNNI
    /// For 4 heads of 128 channels (`q`, head-major) and one 4-bit key group (`group`: 128 channel
    /// rows of 20 bytes — fp16 scale, fp16 zero, codes): codes[h·128 + c] and scales[h·4 + b] as
    /// roundQueries makes them from scaleQueriesH4's q_h[c]·s_c (KVQuant.KeyProductRounding), and
    /// bias[h] = Σ_c q_h[c]·z_c. `stage` holds 528 floats (q·s, then the 16 inverses).
    @inline(never)
    func prepareQueriesH4(_ q: UnsafePointer<Float>, _ group: UnsafeRawPointer, _ codes: UnsafeMutablePointer<Int8>,
                          _ scales: UnsafeMutablePointer<Float>, _ bias: UnsafeMutablePointer<Float>, _ stage: UnsafeMutablePointer<Float>) {
        @inline(__always) func lanes(_ v: SIMD16<Int32>) -> __m512i { unsafeBitCast(v, to: __m512i.self) }
        // Headers (dwords 0, 5, 10, 15 of a row's first 64 bytes) of two rows per vpermt2d.
        let pick = lanes(SIMD16(0, 5, 10, 15, 16, 21, 26, 31, 0, 5, 10, 15, 16, 21, 26, 31))
        // The transpose-reduce's two-source permutes (x's lanes 0–15, y's 16–31), as pairs whose
        // maximum halves the lanes each input keeps: 128-bit quarters twice, then single lanes.
        let halvesLow = lanes(SIMD16(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23))
        let halvesHigh = lanes(SIMD16(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
        let quartersLow = lanes(SIMD16(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27))
        let quartersHigh = lanes(SIMD16(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31))
        let pairsLow = lanes(SIMD16(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29))
        let pairsHigh = lanes(SIMD16(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31))
        let singlesLow = lanes(SIMD16(0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30))
        let singlesHigh = lanes(SIMD16(1, 3, 17, 19, 5, 7, 21, 23, 9, 11, 25, 27, 13, 15, 29, 31))
        @inline(__always) func fold(_ x: __m512, _ y: __m512, _ low: __m512i, _ high: __m512i) -> __m512 {
            _mm512_max_ps(_mm512_permutex2var_ps(x, low, y), _mm512_permutex2var_ps(x, high, y))
        }
        let evens = lanes(SIMD16(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30))
        let odds = lanes(SIMD16(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31))
        var z0 = _mm512_setzero_ps(), z1 = _mm512_setzero_ps(), z2 = _mm512_setzero_ps(), z3 = _mm512_setzero_ps()
        var r0 = _mm512_setzero_ps(), r1 = _mm512_setzero_ps(), r2 = _mm512_setzero_ps(), r3 = _mm512_setzero_ps()
        for b in 0..<4 {
            var m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps(), m2 = _mm512_setzero_ps(), m3 = _mm512_setzero_ps()
            for half in 0..<2 {
                let c = b &* 32 &+ half &* 16
                let p = group + c &* 20
                let low = _mm512_permutex2var_epi32(_mm512_loadu_si512(p), pick, _mm512_loadu_si512(p + 80))
                let high = _mm512_permutex2var_epi32(_mm512_loadu_si512(p + 160), pick, _mm512_loadu_si512(p + 240))
                // fp16 (scale, zero) pairs of channels c…c+7 and c+8…c+15 widened exactly (`vcvtph2ps`),
                // then split into the scales and the zeros.
                let near = _mm512_cvtph_ps(low.lowHalf), far = _mm512_cvtph_ps(high.lowHalf)
                let s = _mm512_permutex2var_ps(near, evens, far), z = _mm512_permutex2var_ps(near, odds, far)
                @inline(__always) func head(_ h: Int, _ zh: inout __m512, _ mh: inout __m512) {
                    let qh = _mm512_loadu_ps(q + (h &* 128 &+ c)), x = _mm512_mul_ps(qh, s)
                    _mm512_storeu_ps(stage + (h &* 128 &+ c), x)
                    zh = _mm512_fmadd_ps(qh, z, zh)
                    mh = maxMagnitude(mh, x)
                }
                head(0, &z0, &m0); head(1, &z1, &m1); head(2, &z2, &m2); head(3, &z3, &m3)
            }
            // Quarter h of r: head h's block b, four partial maxima.
            let r = fold(fold(m0, m1, halvesLow, halvesHigh), fold(m2, m3, halvesLow, halvesHigh), quartersLow, quartersHigh)
            switch b { case 0: r0 = r; case 1: r1 = r; case 2: r2 = r; default: r3 = r }
        }
        // Lane 4·h + b: block (h, b)'s maximum.
        let maxima = fold(fold(r0, r1, pairsLow, pairsHigh), fold(r2, r3, pairsLow, pairsHigh), singlesLow, singlesHigh)
        let d = unsafeBitCast(_mm512_div_ps(maxima, _mm512_set1_ps(127)), to: SIMD16<Float>.self)
        // 1/d, and 0 where d is 0 (roundQueries' inverse).
        let inverse = (SIMD16<Float>(repeating: 1) / d).replacing(with: 0, where: d .== 0)
        UnsafeMutableRawPointer(scales).storeBytes(of: d, as: SIMD16<Float>.self)
        let inverses = stage + 512
        UnsafeMutableRawPointer(inverses).storeBytes(of: inverse, as: SIMD16<Float>.self)
        // vpacksswb of two vpackssdw leaves dword 4·i + k holding input k's lanes 4·i…4·i+3.
        let order = lanes(SIMD16(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15))
        var k = 0
        while k < 16 {
            @inline(__always) func rounded(_ i: Int, _ inverse: __m512) -> __m512i { _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(stage + i), inverse)) }
            let i0 = _mm512_set1_ps(inverses[k]), i1 = _mm512_set1_ps(inverses[k &+ 1])
            let x0 = rounded(k &* 32, i0), x1 = rounded(k &* 32 &+ 16, i0), x2 = rounded(k &* 32 &+ 32, i1), x3 = rounded(k &* 32 &+ 48, i1)
            let bytes = _mm512_packs_epi16(_mm512_packs_epi32(x0, x1), _mm512_packs_epi32(x2, x3))
            _mm512_storeu_si512(UnsafeMutableRawPointer(codes + k &* 32), _mm512_permutexvar_epi32(order, bytes))
            k &+= 2
        }
        bias[0] = _mm512_reduce_add_ps(z0); bias[1] = _mm512_reduce_add_ps(z1)
        bias[2] = _mm512_reduce_add_ps(z2); bias[3] = _mm512_reduce_add_ps(z3)
    }
    #endif

    """
}
