// The value phase of decode attention over 4-bit value groups in 16-bit integer products.
//
// Rationale. In f32 every 4-bit value code of a GQA-4 group feeds four FMAs (one per query
// head), so the value phase ran at about 65% of the FMA bound and was the largest share of the
// attention kernel (29–33% in the profile, Docs/benchmarks.md). KVQuant.ValueProductRounding
// rounds each head's scaled weights w_t·s_t to int16 per block of 32 tokens, so the products
// can be 16-bit pair multiply-adds into Int32 (`vpdpwssd` with AVX-512 VNNI: 32 per
// instruction; `vpmaddwd` + `vpaddd` otherwise). A lane needs two tokens' codes of one channel
// in adjacent 16-bit slots, while the stored layout keeps each token's 32 codes of a group in
// its own row: with AVX-512 two rows' 16 code bytes are zero-extended to dwords (`vpmovzxbd`)
// and the second shifted into the upper word; with AVX2 they are interleaved byte-wise
// (`vpunpcklbw`) and widened to words. Either way dword i holds [code_t, code_t+1] of byte i's
// two channels; a mask gives the even channels, a 4-bit word shift the odd ones. That is 5
// instructions per token pair shared by all heads, against 2 multiply-adds per head (the f32
// kernel: 4 per token and head).
// After each block of 32 tokens its Int32 sums (at most 32767·15·32 < 2²⁴, so exact in f32) are
// converted and added with an FMA by the block's scale into f32 accumulators, in block order.
// The AVX-512 VNNI, AVX2 (with AVX-VNNI's 256-bit `vpdpwssd` where present) and portable paths
// compute the same integers and the same FMAs in the same order: bit-identical.

extension SwiftEmitter {
    /// The rounding of the scaled weights for the integer value kernels.
    static let weightRounding = """

    /// Rounds each of `heads` rows of `n` (≤ 256) scaled weights (`x`, rows `n` apart) to int16
    /// per block of 32 tokens (KVQuant.ValueProductRounding): scales[h·8 + b] = max|x|/32767,
    /// q[h·256 + t] = x/scale rounded to nearest even (0 in a zero block); q is 0 from n to the
    /// next multiple of 32, so a kernel reading token pairs multiplies a missing partner by 0.
    #if KVPLAN_AVX512
    /// q[i] = x[i]·inverse rounded to nearest even, for i < 32, in two 512-bit vectors
    /// (`vpmovsdw`: Int32 → Int16 in order, saturating; the codes are within ±32767).
    @inline(__always)
    func roundBlock(_ x: UnsafePointer<Float>, _ inverse: Float, _ q: UnsafeMutablePointer<Int16>) {
        let inverse = _mm512_set1_ps(inverse)
        for i in stride(from: 0, to: 32, by: 16) {
            let codes = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), inverse)))
            _mm256_storeu_si256(UnsafeMutableRawPointer(q + i).assumingMemoryBound(to: __m256i.self), codes)
        }
    }
    #endif

    @inline(never)
    func roundWeights(_ x: UnsafePointer<Float>, heads: Int, _ n: Int, _ q: UnsafeMutablePointer<Int16>, _ scales: UnsafeMutablePointer<Float>) {
    #if KVPLAN_AVX512
        if n & 31 == 0 && heads <= 4 {
            // Three passes, so no block waits on its own max → divide → divide → round chain
            // (block by block, the divisions were a third of this pass, measured): the maxima,
            // then every head's scales and inverses in two 16-lane divisions (IEEE, so the values
            // one at a time gives), then the rounding.
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 64) { buffer in
                let maxima = buffer.baseAddress!, inverses = maxima + 32
                let blocks = n &>> 5
                UnsafeMutableRawPointer(maxima).storeBytes(of: SIMD16<Float>(), as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(maxima + 16).storeBytes(of: SIMD16<Float>(), as: SIMD16<Float>.self)
                for h in 0..<heads {
                    for b in 0..<blocks { maxima[h &* 8 &+ b] = absoluteMaximum32(x + (h &* n &+ b &* 32)) }
                }
                for i in stride(from: 0, to: 32, by: 16) {
                    let a = UnsafeRawPointer(maxima + i).loadUnaligned(as: SIMD16<Float>.self) / 32767
                    UnsafeMutableRawPointer(maxima + i).storeBytes(of: a, as: SIMD16<Float>.self)
                    UnsafeMutableRawPointer(inverses + i).storeBytes(of: (SIMD16<Float>(repeating: 1) / a).replacing(with: 0, where: a .== 0), as: SIMD16<Float>.self)
                }
                for h in 0..<heads {
                    let row = x + h &* n, qh = q + h &* 256
                    for b in 0..<blocks {
                        scales[h &* 8 &+ b] = maxima[h &* 8 &+ b]
                        roundBlock(row + b &* 32, inverses[h &* 8 &+ b], qh + b &* 32)
                    }
                }
            }
            return
        }
    #endif
        for h in 0..<heads {
            let row = x + h &* n, qh = q + h &* 256
            var t0 = 0, b = 0
            while t0 < n {
                let m = min(32, n &- t0)
    #if KVPLAN_AVX2
                if m == 32 {
                    let a = absoluteMaximum32(row + t0) / 32767
                    scales[h &* 8 &+ b] = a
    #if KVPLAN_AVX512
                    roundBlock(row + t0, a == 0 ? 0 : 1 / a, qh + t0)
    #else
                    let inverse = _mm256_set1_ps(a == 0 ? 0 : 1 / a)
                    @inline(__always) func codes(_ i: Int) -> __m256i { _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(row + (t0 &+ i)), inverse)) }
                    // packs works per 128-bit half: dwords [v0 0–3, v1 0–3, v0 4–7, v1 4–7] → in order.
                    let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7)
                    for i in stride(from: 0, to: 32, by: 16) {
                        let packed = _mm256_permutevar8x32_epi32(_mm256_packs_epi32(codes(i), codes(i &+ 8)), order)
                        _mm256_storeu_si256(UnsafeMutableRawPointer(qh + (t0 &+ i)).assumingMemoryBound(to: __m256i.self), packed)
                    }
    #endif
                    t0 &+= 32
                    b &+= 1
                    continue
                }
    #endif
                var amax: Float = 0
                for t in 0..<m { amax = max(amax, abs(row[t0 &+ t])) }
                let a = amax / 32767
                let inverse: Float = a == 0 ? 0 : 1 / a
                scales[h &* 8 &+ b] = a
                for t in 0..<m {
                    let r = (row[t0 &+ t] * inverse).rounded(.toNearestOrEven)
                    qh[t0 &+ t] = r.isNaN ? 0 : Int16(max(-32767, min(32767, r)))
                }
                for t in m..<32 { qh[t0 &+ t] = 0 }
                t0 &+= 32
                b &+= 1
            }
        }
    }

    #if KVPLAN_AVX2
    /// a + the (s16 × s16) products of x and q summed per two neighbouring words: `vpdpwssd` with
    /// AVX-VNNI, otherwise `vpmaddwd` + `vpaddd` (the same Int32 sums).
    @inline(__always)
    func valueProducts(_ a: __m256i, _ x: __m256i, _ q: __m256i) -> __m256i {
    #if KVPLAN_AVXVNNI
        return _mm256_dpwssd_avx_epi32(a, x, q)
    #else
        return _mm256_add_epi32(a, _mm256_madd_epi16(x, q))
    #endif
    }
    #endif

    """

    /// The integer value kernel for `heads` heads (1–4), named `valueGroupAccumulateI16H<heads>`.
    static func integerValueKernel(heads: Int) -> String {
        let hs = 0..<heads
        func at(_ h: Int, _ stride: Int, _ i: String) -> String { h == 0 ? i : "\(h * stride) &+ \(i)" }
        var s = """

        /// y_h[0..<32] += Σ_B qs[h·8 + B]·Σ_{t∈B} q[h·256 + t]·code_t + bias[h] for \(heads) head(s) over one
        /// 4-bit value channel group of `tokens` rows (`rowBytes` apart, codes after the 4-byte scale
        /// and zero), outputs `dv` apart: the weights rounded by roundWeights
        /// (KVQuant.ValueProductRounding), 16-bit products summed exactly per block of 32 tokens.
        /// Not inlined, as the f32 blocked kernels. Brings `tokens` × 20 bytes from `ahead` into the
        /// second-level cache as it goes (the caller's share of the next tile).
        @inline(never)
        func valueGroupAccumulateI16H\(heads)(_ q: UnsafePointer<Int16>, _ qs: UnsafePointer<Float>, tokens: Int, _ rows: UnsafeRawPointer, rowBytes: Int,
                                          _ bias: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, dv: Int,
                                          _ tmp: UnsafeMutablePointer<Float>, ahead: UnsafeRawPointer) {
            @inline(__always) func pair(_ t: Int) -> Int32 { UnsafeRawPointer(q + t).loadUnaligned(as: Int32.self) }
        #if KVPLAN_AVX512VNNI

        """
        s += vnniValueProducts(heads: heads, pair: { "pair(\(at($0, 256, "t")))" }, scale: { "qs[\(at($0, 8, "b"))]" })
        s += vnniValueOutputs(heads: heads, bias: { "bias[\($0)]" })
        s += """
        #elseif KVPLAN_AVX2
            prefetchBytesL2(ahead, tokens &* 20)
            let low = _mm256_set1_epi16(15)
            @inline(__always) func bytes8(_ t: Int, _ half: Int) -> __m128i {
                unsafeBitCast(SIMD2<UInt64>((rows + (t &* rowBytes &+ 4 &+ half &* 8)).loadUnaligned(as: UInt64.self), 0), to: __m128i.self)
            }
            for i in 0..<\(heads * 32) { tmp[i] = 0 }
            for half in 0..<2 {
                var t = 0, b = 0
                while t < tokens {
                    let end = min(t &+ 32, tokens)
                    var \(hs.map { "a\($0)e = _mm256_setzero_si256(), a\($0)o = _mm256_setzero_si256()" }.joined(separator: ", "))
                    while t < end {
                        let x = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(bytes8(t, half), bytes8(min(t &+ 1, tokens &- 1), half)))
                        let e = _mm256_and_si256(x, low), o = _mm256_srli_epi16(x, 4)

        """
        for h in hs {
            s += "                let q\(h) = _mm256_set1_epi32(pair(\(at(h, 256, "t")))); a\(h)e = valueProducts(a\(h)e, e, q\(h)); a\(h)o = valueProducts(a\(h)o, o, q\(h))\n"
        }
        s += "                t &+= 2\n            }\n"
        for h in hs {
            s += """
                        let s\(h) = SIMD8<Float>(repeating: qs[\(at(h, 8, "b"))])
                        let e\(h) = UnsafeMutableRawPointer(tmp + (\(h * 32) &+ half &* 8)), o\(h) = UnsafeMutableRawPointer(tmp + (\(h * 32 + 16) &+ half &* 8))
                        e\(h).storeBytes(of: e\(h).loadUnaligned(as: SIMD8<Float>.self).addingProduct(s\(h), unsafeBitCast(_mm256_cvtepi32_ps(a\(h)e), to: SIMD8<Float>.self)), as: SIMD8<Float>.self)
                        o\(h).storeBytes(of: o\(h).loadUnaligned(as: SIMD8<Float>.self).addingProduct(s\(h), unsafeBitCast(_mm256_cvtepi32_ps(a\(h)o), to: SIMD8<Float>.self)), as: SIMD8<Float>.self)

            """
        }
        s += """
                    b &+= 1
                }
            }

        """
        s += avx2ValueOutputs(heads: heads, bias: { "bias[\($0)]" })
        s += """
        #else
            for i in 0..<\(heads * 32) { tmp[i] = 0 }
            var t0 = 0, b = 0
            while t0 < tokens {
                let end = min(t0 &+ 32, tokens)
                for h in 0..<\(heads) {
                    var e = SIMD16<Int32>(), o = SIMD16<Int32>()
                    for t in t0..<end {
                        let w = Int32(q[h &* 256 &+ t])
                        let codes = SIMD16<Int32>(truncatingIfNeeded: (rows + (t &* rowBytes &+ 4)).loadUnaligned(as: SIMD16<UInt8>.self))
                        e &+= w &* (codes & 15)
                        o &+= w &* (codes &>> 4)
                    }
                    let scale = qs[h &* 8 &+ b]
                    for i in 0..<16 {
                        tmp[h &* 32 &+ i] = tmp[h &* 32 &+ i].addingProduct(scale, Float(e[i]))
                        tmp[h &* 32 &+ 16 &+ i] = tmp[h &* 32 &+ 16 &+ i].addingProduct(scale, Float(o[i]))
                    }
                }
                t0 = end
                b &+= 1
            }

        """
        return s + valueOutputs(heads: heads, bias: { "bias[\($0)]" }) + "#endif\n}\n"
    }

    /// The AVX-512 VNNI body of an integer value kernel: each block of 32 tokens' Int32 sums per head
    /// (two rows' codes per dword, `vpdpwssd` with the head's weight pair `pair(h)`), added to f32
    /// accumulators by the block's scale `scale(h)` and stored to tmp[h·32 ..< h·32 + 32] (even
    /// channels, then odd). Shared by the head-major and the token-major (TokenMajorWeights) kernels,
    /// which differ only in where a head's weights and scales are.
    static func vnniValueProducts(heads: Int, pair: (Int) -> String, scale: (Int) -> String) -> String {
        let hs = 0..<heads
        var s = """
                // A token pair's codes: each row's 16 bytes zero-extended to dwords, the second row's
                // shifted to the upper word, so dword i = [byte i of t, byte i of t+1]; the low nibbles
                // (even channels) masked, the high ones (odd channels) shifted down word-wise.
                let low = _mm512_set1_epi32(0x000F_000F)
                @inline(__always) func row(_ p: UnsafeRawPointer) -> __m512i { _mm512_cvtepu8_epi32(unsafeBitCast(p.loadUnaligned(as: SIMD16<UInt8>.self), to: __m128i.self)) }
                var \(hs.map { "y\($0)e = _mm512_setzero_ps(), y\($0)o = _mm512_setzero_ps()" }.joined(separator: ", "))
                var p = rows + 4
                var t = 0, b = 0
                while t < tokens {
                    let end = min(t &+ 32, tokens)
                    var \(hs.map { "a\($0)e = _mm512_setzero_si512(), a\($0)o = _mm512_setzero_si512()" }.joined(separator: ", "))
                    while t < end {
                        // One line of the next tile per pair, spread over the products: issued as a
                        // burst per channel group they filled the miss queue and stalled the core
                        // (+9% at DRAM size, measured; Docs/benchmarks.md).
                        prefetchLineL2(ahead + t &* 20)
                        // The last token of an odd count pairs with nothing (its partner's weight is 0).
                        let x = t &+ 1 < end ? _mm512_or_si512(row(p), _mm512_slli_epi32(row(p + rowBytes), 16)) : row(p)
                        let e = _mm512_and_si512(x, low), o = _mm512_srli_epi16(x, 4)

            """
        for h in hs {
            s += "            let q\(h) = _mm512_set1_epi32(\(pair(h))); a\(h)e = _mm512_dpwssd_epi32(a\(h)e, e, q\(h)); a\(h)o = _mm512_dpwssd_epi32(a\(h)o, o, q\(h))\n"
        }
        s += "            t &+= 2\n            p += 2 &* rowBytes\n        }\n"
        for h in hs {
            s += "        let s\(h) = _mm512_set1_ps(\(scale(h))); y\(h)e = _mm512_fmadd_ps(s\(h), _mm512_cvtepi32_ps(a\(h)e), y\(h)e); y\(h)o = _mm512_fmadd_ps(s\(h), _mm512_cvtepi32_ps(a\(h)o), y\(h)o)\n"
        }
        s += "        b &+= 1\n    }\n"
        return s
    }

    /// `zipLow` and `zipHigh`: the `vpermt2ps` indices that interleave two 16-lane vectors (even
    /// positions from the first, odd from the second), lanes 0–7 then 8–15 of each — how the
    /// VNNI key and value kernels put their even- and odd-token (or channel) sums back in order.
    static func zipIndices(indent: String) -> String {
        let low = (0..<8).flatMap { [$0, $0 + 16] }, high = (8..<16).flatMap { [$0, $0 + 16] }
        func constant(_ name: String, _ lanes: [Int]) -> String {
            "\(indent)let \(name) = unsafeBitCast(SIMD16<Int32>(\(lanes.map(String.init).joined(separator: ", "))), to: __m512i.self)\n"
        }
        return constant("zipLow", low) + constant("zipHigh", high)
    }

    /// The end of an AVX-512 VNNI value kernel: y_h[c] += (sum + `bias(h)`), the even and odd
    /// channels' sums zipped back into channel order, 16 outputs per vector (the same additions
    /// in the same order as valueOutputs' scalar loop, which LLVM left scalar: 128 per call).
    static func vnniValueOutputs(heads: Int, bias: (Int) -> String) -> String {
        var s = zipIndices(indent: "    ")
        for h in 0..<heads {
            s += """
                let y\(h)p = y + \(h == 0 ? "0" : "dv &* \(h)"), b\(h) = _mm512_set1_ps(\(bias(h)))
                let v\(h)e = _mm512_add_ps(y\(h)e, b\(h)), v\(h)o = _mm512_add_ps(y\(h)o, b\(h))
                _mm512_storeu_ps(y\(h)p, _mm512_add_ps(_mm512_loadu_ps(y\(h)p), _mm512_permutex2var_ps(v\(h)e, zipLow, v\(h)o)))
                _mm512_storeu_ps(y\(h)p + 16, _mm512_add_ps(_mm512_loadu_ps(y\(h)p + 16), _mm512_permutex2var_ps(v\(h)e, zipHigh, v\(h)o)))

            """
        }
        return s
    }

    /// valueOutputs in 256-bit vectors (AVX2): the even and odd channels' sums zipped 8 at a time
    /// (`vunpcklps`/`vunpckhps` within 128-bit halves, then the halves regrouped), the same
    /// additions in the same order as the scalar loop, which LLVM left scalar.
    static func avx2ValueOutputs(heads: Int, bias: (Int) -> String) -> String {
        var s = """
            @inline(__always) func zipAdd(_ y: UnsafeMutablePointer<Float>, _ e: SIMD8<Float>, _ o: SIMD8<Float>) {
                let l = _mm256_unpacklo_ps(e, o), h = _mm256_unpackhi_ps(e, o), p = UnsafeMutableRawPointer(y)
                p.storeBytes(of: p.loadUnaligned(as: SIMD8<Float>.self) + SIMD8(lowHalf: l.lowHalf, highHalf: h.lowHalf), as: SIMD8<Float>.self)
                p.storeBytes(of: p.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self) + SIMD8(lowHalf: l.highHalf, highHalf: h.highHalf),
                             toByteOffset: 32, as: SIMD8<Float>.self)
            }
            @inline(__always) func sums(_ i: Int) -> SIMD8<Float> { UnsafeRawPointer(tmp + i).loadUnaligned(as: SIMD8<Float>.self) }

        """
        for h in 0..<heads {
            s += """
                let y\(h) = y + \(h == 0 ? "0" : "dv &* \(h)"), b\(h) = SIMD8<Float>(repeating: \(bias(h)))
                zipAdd(y\(h), sums(\(h * 32)) + b\(h), sums(\(h * 32 + 16)) + b\(h))
                zipAdd(y\(h) + 16, sums(\(h * 32 + 8)) + b\(h), sums(\(h * 32 + 24)) + b\(h))

            """
        }
        return s
    }

    /// The end of an integer value kernel: y_h[c] += tmp (even channels, then odd) + `bias(h)`.
    static func valueOutputs(heads: Int, bias: (Int) -> String) -> String {
        (0..<heads).map { h in
            "    let y\(h) = y + \(h == 0 ? "0" : "dv &* \(h)"), b\(h) = \(bias(h))\n"
                + "    for i in 0..<16 { y\(h)[i &* 2] += tmp[\(h * 32) &+ i] + b\(h); y\(h)[i &* 2 &+ 1] += tmp[\(h * 32 + 16) &+ i] + b\(h) }\n"
        }.joined()
    }
}
