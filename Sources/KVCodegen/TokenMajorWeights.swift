// The value phase of grouped-query attention (4 query heads per KV head, head_dim 128, 4-bit
// values) with every channel group's int16 weights prepared in one token-major pass.
//
// Rationale. The head-major path (IntegerValueKernel) prepares each 32-channel value group's
// weights separately: per tile of 256 tokens and per group, scaleWeights reads every head's
// softmax weights and the group's 16 token headers (scalar inserts, the rows are 80 bytes apart)
// and writes w·s in f32, and roundWeights reads them back, reduces each (head, 32-token block)
// maximum horizontally and rounds. Four groups × four heads made that 21% of the attention's time
// at DRAM size on top of the softmax's separate normalisation pass (perf timer sampling,
// Docs/benchmarks.md). Here the 16 (group, head) products of a token are one 512-bit vector,
// lane j·4 + h = w_h·s_{t,j}: four tokens' headers come from four 64-byte row loads, two
// `vpermt2d` and two `vcvtph2ps` (each widening two tokens' (scale, zero) pairs exactly; one
// `vpermps` per token then picks its scales, another its zeros), each token's four weights
// from a 4 × 16 transpose of the heads' rows, stored token-major so one 128-bit broadcast load
// repeats them over the four groups (no permute: lane j·4 + h rather than h·4 + j for that), and
// the block maxima of ValueProductRounding are plain vertical `vmaxps` over the block's tokens —
// no horizontal reductions, one division per block for all 16 lanes. The rounded codes are
// stored as the products read them: per token pair 16 dwords (j, h) of [x_t, x_{t+1}]
// (`vpackssdw` + `vpermw`), so `valueGroupAccumulateI16T4` broadcasts a head's pair for group j
// from `(t/2)·64 + j·16 + h·4` bytes.
//
// The softmax's normalisation folds in: rounding is per lane and scale-free, so the codes of
// e·s and of (e/Z)·s agree but for f32's last bits (which ValueProductRounding's error bound
// already covers — the reference keeps the exact products); 1/Z_h multiplies the block scales
// and the bias instead, and the attention each slot received, Σ_h e_h/Z_h, is summed here from the
// same rows (in slotSoftmaxH4's order, so bit-identical). The driver folds it only when every
// segment of the layout takes this path, and passes factors 1 and no `received` otherwise.
// AVX-512 VNNI only; elsewhere the head-major path runs.

extension SwiftEmitter {
    /// True when segment `s`'s values take the token-major path (`prepareWeightsH4`).
    static func tokenMajorValues(_ s: KVSegment, heads: Int, dv: Int) -> Bool {
        integerValues(s, dv: dv) && heads == 4 && dv == 128
    }

    /// prepareWeightsH4 and valueGroupAccumulateI16T4 (the latter IntegerValueKernel's AVX-512 VNNI
    /// products over the token-major codes).
    static let tokenMajorWeightKernels = """

    #if KVPLAN_AVX512VNNI
    /// One tile's int16 weights for all four 32-channel value groups of 4 heads, token-major
    /// (KVQuant.ValueProductRounding per lane j·4 + h and block of 32 tokens): x = e_h[t]·s_{t,j}
    /// with e_h the softmax rows at `e` (`stride` apart, 0 for empty slots), rows 80 bytes apart
    /// (four groups of fp16 scale, fp16 zero, 16 code bytes). codes: per token pair 16 dwords
    /// (j, h) of [x_t, x_t+1]; scales[B·16 + j·4 + h] = max_B|x|/32767·factors[h];
    /// bias[j·4 + h] = Σ_t e_h[t]·zero_{t,j}·factors[h]; received[t] = Σ_h e_h[t]·factors[h] when
    /// given. `tokens` at most 256 (codes 0 past it to the block's end); `stage` 576 floats (the
    /// products of a block, then 16 tokens' weights token-major).
    @inline(never)
    func prepareWeightsH4(_ e: UnsafePointer<Float>, stride: Int, _ factors: UnsafePointer<Float>, _ rows: UnsafeRawPointer,
                          tokens: Int, _ codes: UnsafeMutablePointer<Int16>, _ scales: UnsafeMutablePointer<Float>,
                          _ bias: UnsafeMutablePointer<Float>, _ received: UnsafeMutablePointer<Float>?, _ stage: UnsafeMutablePointer<Float>) {
        let f0 = _mm512_set1_ps(factors[0]), f1 = _mm512_set1_ps(factors[1]), f2 = _mm512_set1_ps(factors[2]), f3 = _mm512_set1_ps(factors[3])
        let factorLanes = _mm512_broadcast_f32x4(_mm_loadu_ps(factors))
        let heads = stage + 512
        // Headers (dwords 0, 5, 10, 15 of a row's first 64 bytes) of two rows per vpermt2d.
        let pick = unsafeBitCast(SIMD16<Int32>(0, 5, 10, 15, 16, 21, 26, 31, 0, 5, 10, 15, 16, 21, 26, 31), to: __m512i.self)
        let scalesOf0 = unsafeBitCast(SIMD16<Int32>(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6), to: __m512i.self)
        let zerosOf0 = _mm512_add_epi32(scalesOf0, _mm512_set1_epi32(1)), scalesOf1 = _mm512_add_epi32(scalesOf0, _mm512_set1_epi32(8))
        let zerosOf1 = _mm512_add_epi32(scalesOf0, _mm512_set1_epi32(9))
        // vpackssdw interleaves per 128-bit lane; this puts x_t and x_t+1 of a lane side by side.
        let pairs = unsafeBitCast(SIMD32<Int16>(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15,
                                                16, 20, 17, 21, 18, 22, 19, 23, 24, 28, 25, 29, 26, 30, 27, 31), to: __m512i.self)
        var zeros = _mm512_setzero_ps()
        var t = 0, b = 0
        let last = tokens &- 1
        while t < tokens {
            var maxima = _mm512_setzero_ps()
            var k = 0
            while k < 32 {
                let u = t &+ k
                // Past `tokens` (a last, partial block): weights 0 (masked loads read nothing there),
                // headers of the last row, nothing stored to `received`.
                let live = min(16, max(0, tokens &- u))
                let valid = __mmask16(truncatingIfNeeded: (1 &<< live) &- 1)
                let e0 = _mm512_maskz_loadu_ps(valid, e + u), e1 = _mm512_maskz_loadu_ps(valid, e + (stride &+ u))
                let e2 = _mm512_maskz_loadu_ps(valid, e + (2 &* stride &+ u)), e3 = _mm512_maskz_loadu_ps(valid, e + (3 &* stride &+ u))
                if let received {
                    // slotSoftmaxH4's order: 0 + w0 + w1 + w2 + w3.
                    let r01 = _mm512_add_ps(_mm512_mul_ps(e0, f0), _mm512_mul_ps(e1, f1))
                    let r = _mm512_add_ps(_mm512_add_ps(r01, _mm512_mul_ps(e2, f2)), _mm512_mul_ps(e3, f3))
                    _mm512_mask_storeu_ps(received + u, valid, r)
                }
                // 4 × 16 → four vectors of four tokens × four heads (lane 4·L + h: token 4·L + r of P_r).
                let a = _mm512_unpacklo_ps(e0, e1), c = _mm512_unpackhi_ps(e0, e1), d = _mm512_unpacklo_ps(e2, e3), f = _mm512_unpackhi_ps(e2, e3)
                let p0 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(d)))
                let p1 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(d)))
                let p2 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(c), _mm512_castps_pd(f)))
                let p3 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(c), _mm512_castps_pd(f)))
                _mm512_storeu_ps(heads, p0); _mm512_storeu_ps(heads + 16, p1); _mm512_storeu_ps(heads + 32, p2); _mm512_storeu_ps(heads + 48, p3)
                for L in 0..<4 {
                    @inline(__always) func row(_ i: Int) -> __m512i { _mm512_loadu_si512(rows + min(u &+ 4 &* L &+ i, last) &* 80) }
                    let low = _mm512_permutex2var_epi32(row(0), pick, row(1)), high = _mm512_permutex2var_epi32(row(2), pick, row(3))
                    // fp16 pairs (s, z) of tokens 4·L + 0, 1 (low) and 2, 3 (high), widened exactly:
                    // lane 2·(4·(r % 2) + j) holds s of token r's group j, the next lane its z.
                    let near = _mm512_cvtph_ps(low.lowHalf), far = _mm512_cvtph_ps(high.lowHalf)
                    @inline(__always) func token(_ r: Int) {
                        let w = _mm512_broadcast_f32x4(_mm_loadu_ps(heads + (r &* 16 &+ 4 &* L)))
                        let sz = r < 2 ? near : far
                        let x = _mm512_mul_ps(w, _mm512_permutexvar_ps(r & 1 == 0 ? scalesOf0 : scalesOf1, sz))
                        zeros = _mm512_fmadd_ps(w, _mm512_permutexvar_ps(r & 1 == 0 ? zerosOf0 : zerosOf1, sz), zeros)
                        maxima = maxMagnitude(maxima, x)
                        _mm512_storeu_ps(stage + (k &+ 4 &* L &+ r) &* 16, x)
                    }
                    token(0); token(1); token(2); token(3)
                }
                k &+= 16
            }
            let scale = unsafeBitCast(_mm512_div_ps(maxima, _mm512_set1_ps(32767)), to: SIMD16<Float>.self)
            let inverse = unsafeBitCast((SIMD16<Float>(repeating: 1) / scale).replacing(with: 0, where: scale .== 0), to: __m512.self)
            _mm512_storeu_ps(scales + b &* 16, _mm512_mul_ps(unsafeBitCast(scale, to: __m512.self), factorLanes))
            var v = 0
            while v < 32 {
                let x0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(stage + v &* 16), inverse))
                let x1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(stage + (v &+ 1) &* 16), inverse))
                _mm512_storeu_si512(UnsafeMutableRawPointer(codes + (t &+ v) &* 16), _mm512_permutexvar_epi16(pairs, _mm512_packs_epi32(x0, x1)))
                v &+= 2
            }
            t &+= 32
            b &+= 1
        }
        _mm512_storeu_ps(bias, _mm512_mul_ps(zeros, factorLanes))
    }

    /// y_h[0..<32] += Σ_B qs[B·16 + h]·Σ_{t∈B} x_h[t]·code_t + bias[h] for 4 heads over one 4-bit
    /// value channel group j of `tokens` rows (`rowBytes` apart, codes after the 4-byte scale and
    /// zero), outputs `dv` apart, the weights prepareWeightsH4's token-major codes (q, qs and bias
    /// already offset by the group: q + 8·j, qs + 4·j, bias + 4·j). valueGroupAccumulateI16H4's
    /// products and prefetches otherwise.
    @inline(never)
    func valueGroupAccumulateI16T4(_ q: UnsafePointer<Int16>, _ qs: UnsafePointer<Float>, tokens: Int, _ rows: UnsafeRawPointer, rowBytes: Int,
                                   _ bias: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, dv: Int,
                                   _ tmp: UnsafeMutablePointer<Float>, ahead: UnsafeRawPointer) {
        let weights = UnsafeRawPointer(q)
        @inline(__always) func pair(_ t: Int, _ h: Int) -> Int32 { weights.loadUnaligned(fromByteOffset: (t &>> 1) &* 64 &+ h &* 4, as: Int32.self) }

    """ + vnniValueProducts(heads: 4, pair: { "pair(t, \($0))" }, scale: { "qs[b &* 16\($0 == 0 ? "" : " &+ \($0)")]" })
        + vnniValueOutputs(heads: 4, bias: { "bias[\($0)]" }) + """
    }
    #endif

    """
}
