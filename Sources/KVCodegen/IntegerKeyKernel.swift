// The key phase of decode attention over whole 4-bit key groups in 8-bit integer products.
//
// Rationale. In f32 every 4-bit code of a GQA-4 key group feeds four FMAs (one per query head),
// which caps the key phase near 4 GB/s on this machine, a fifth of the copy bandwidth
// (Docs/benchmarks.md). KVQuant.KeyProductRounding rounds the scaled query to int8 per block of
// 32 channels, so the products can be `vpmaddubsw` (u8 codes × s8 query, 32 per instruction):
// per pair of channels one 16-bit sum, two more channels in the neighbouring lane. That needs a
// token's channels in adjacent bytes, while KIVI's layout stores each channel's 32 codes in its
// own 20-byte row. Rather than change the stored layout (the cache manager, the packed reference
// and every segment size would follow), four channel rows are interleaved in registers: 8 bytes
// of each (16 tokens, two per byte) are unpacked byte-wise then word-wise into [token pair:
// c0 c1 c2 c3], and the nibbles split into even and odd tokens — 8 shuffle/mask instructions per
// 4 channels × 16 tokens, against which each head needs 2 multiply-adds and 2 adds. Sums stay in
// 16 bits for one block of 32 channels (8 × 2·15·127 = 30,480 < 32,767), then `vpmaddwd` with
// ones gives each token's Int32 sum, converted and scaled by the block's query scale in f32.
// With AVX-VNNI (KVPLAN_AVXVNNI, KernelLibrary) `vpdpbusd` does multiply, pair sums and the
// accumulation into Int32 in one instruction: the same integers, two instructions fewer per head.
//
// Without AVX2 (the portable build) the attention kernel calls the f32 blocked kernel over the
// rounded query instead (QuantisedRow.values), the same products up to summation order.

extension SwiftEmitter {
    /// The rounding of the scaled query for the integer key kernels (AVX2 builds).
    static let queryRounding = """

    #if KVPLAN_AVX2
    /// Rounds `n` scaled query values (a multiple of 32) to int8 per block of 32: scales[b] =
    /// max|x|/127, codes x/scale rounded to nearest even (KVQuant.KeyProductRounding) —
    /// quantiseRow's rounding without its q4_0 offsets, the block maximum reduced in registers
    /// (a lane-by-lane scalar maximum made this pass cost more than the products).
    @inline(never)
    func roundQueries(_ x: UnsafePointer<Float>, _ n: Int, _ codes: UnsafeMutablePointer<Int8>, _ scales: UnsafeMutablePointer<Float>) {
        @inline(__always) func load(_ i: Int) -> SIMD8<Float> { UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) }
        @inline(__always) func i32(_ v: SIMD8<Float>, _ inverse: SIMD8<Float>) -> __m256i { _mm256_cvtps_epi32((v * inverse).rounded(.toNearestOrEven)) }
        let blocks = n &>> 5, padded = (blocks &+ 7) & ~7
        // Three passes, so no block waits on its own max → divide → divide → round chain: the
        // maxima, then scales and inverses eight blocks per vector division (IEEE division, so
        // the same values as one at a time), then the rounding.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 &* padded) { buffer in
            let maxima = buffer.baseAddress!, inverses = maxima + padded
            var b = 0
            while b < padded {
                guard b < blocks else { maxima[b] = 0; b &+= 1; continue }
                maxima[b] = absoluteMaximum32(x + b &* 32)
                b &+= 1
            }
            b = 0
            while b < padded {
                let d = UnsafeRawPointer(maxima + b).loadUnaligned(as: SIMD8<Float>.self) / 127
                // 1/d, and 0 where d is +0 (d ≥ 0 or NaN: a maximum of magnitudes; NaN stays NaN).
                let zero = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_castps_si256(d), _mm256_setzero_si256()))
                let inverse = _mm256_andnot_ps(zero, SIMD8<Float>(repeating: 1) / d)
                UnsafeMutableRawPointer(inverses + b).storeBytes(of: inverse, as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(maxima + b).storeBytes(of: d, as: SIMD8<Float>.self)
                b &+= 8
            }
            b = 0
            while b < blocks {
                scales[b] = maxima[b]
    #if KVPLAN_AVX512
                // vpmovsdb saturates Int32 to Int8 in order: the codes packs + permute give.
                let inverse16 = _mm512_set1_ps(inverses[b])
                @inline(__always) func codes16(_ i: Int) -> __m128i { _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), inverse16))) }
                UnsafeMutableRawPointer(codes + b &* 32).storeBytes(of: unsafeBitCast(codes16(b &* 32), to: SIMD16<Int8>.self), as: SIMD16<Int8>.self)
                UnsafeMutableRawPointer(codes + (b &* 32 &+ 16)).storeBytes(of: unsafeBitCast(codes16(b &* 32 &+ 16), to: SIMD16<Int8>.self), as: SIMD16<Int8>.self)
                b &+= 1
                continue
    #endif
                let inverse = SIMD8<Float>(repeating: inverses[b])
                let v0 = load(b &* 32), v1 = load(b &* 32 &+ 8), v2 = load(b &* 32 &+ 16), v3 = load(b &* 32 &+ 24)
                let low = _mm256_packs_epi32(i32(v0, inverse), i32(v1, inverse)), high = _mm256_packs_epi32(i32(v2, inverse), i32(v3, inverse))
                let packed = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(low, high), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
                UnsafeMutableRawPointer(codes + b &* 32).storeBytes(of: unsafeBitCast(packed, to: SIMD32<Int8>.self), as: SIMD32<Int8>.self)
                b &+= 1
            }
        }
    }

    /// a + the (u8 × s8) products of u and s summed per four neighbouring bytes: `vpdpbusd` into
    /// Int32 lanes with AVX-VNNI; otherwise `vpmaddubsw` into Int16 pair sums (keySums widens them).
    @inline(__always)
    func keyProducts(_ a: __m256i, _ u: __m256i, _ s: __m256i) -> __m256i {
    #if KVPLAN_AVXVNNI
        return _mm256_dpbusd_avx_epi32(a, u, s)
    #else
        return _mm256_add_epi16(a, _mm256_maddubs_epi16(u, s))
    #endif
    }

    /// keyProducts' accumulator as eight f32 sums of four neighbouring bytes' products each.
    @inline(__always)
    func keySums(_ a: __m256i) -> SIMD8<Float> {
    #if KVPLAN_AVXVNNI
        return unsafeBitCast(_mm256_cvtepi32_ps(a), to: SIMD8<Float>.self)
    #else
        return unsafeBitCast(_mm256_cvtepi32_ps(_mm256_madd_epi16(a, _mm256_set1_epi16(1))), to: SIMD8<Float>.self)
    #endif
    }
    #endif

    """

    /// The integer key kernel for `heads` heads (1–4), named `keyGroupLogitsI8H<heads>`.
    static func integerKeyKernel(heads: Int) -> String {
        let hs = 0..<heads
        var s = """

        #if KVPLAN_AVX2
        /// Scaled logits of \(heads) head(s) over one full 4-bit key group of 32 tokens in 8-bit integer
        /// products (KVQuant.KeyProductRounding): out[h·stride + t] = (Σ_B qs[h·d/32 + B]·Σ_{c∈B}
        /// q8[h·d + c]·code_ct + bias[h])·scale, channel rows `rowBytes` apart (codes after the 4-byte
        /// scale and zero), `d` a multiple of 32. Not inlined, as the f32 blocked kernels.
        /// Brings the group two ahead (`ahead`, as long as this one) into the first-level cache and
        /// the one four ahead into the second as it goes.
        @inline(never)
        func keyGroupLogitsI8H\(heads)(_ q8: UnsafePointer<Int8>, _ qs: UnsafePointer<Float>, _ group: UnsafeRawPointer, rowBytes: Int, d: Int,
                                   _ bias: UnsafePointer<Float>, scale: Float, _ out: UnsafeMutablePointer<Float>, stride: Int,
                                   _ tmp: UnsafeMutablePointer<Float>, ahead: UnsafeRawPointer) {
        #if KVPLAN_AVX512VNNI
        \(wideIntegerKeys(heads: heads))
        #else
            prefetchBytes(ahead, d &* rowBytes)
            prefetchBytesL2(ahead + 2 &* d &* rowBytes, d &* rowBytes)
            let low = _mm256_set1_epi8(15)
            @inline(__always) func bytes8(_ p: UnsafeRawPointer) -> __m128i { unsafeBitCast(SIMD2<UInt64>(p.loadUnaligned(as: UInt64.self), 0), to: __m128i.self) }
            let blocks = d &>> 5
            for half in 0..<2 {
                for i in 0..<\(heads * 16) { tmp[i] = 0 }
                for b in 0..<blocks {
                    var \(hs.map { "a\($0)e = _mm256_setzero_si256(), a\($0)o = _mm256_setzero_si256()" }.joined(separator: ", "))
                    var p = group + (b &* 32 &* rowBytes &+ 4 &+ half &* 8)
                    let qb = UnsafeRawPointer(q8 + b &* 32)
                    for quad in 0..<8 {
                        let u01 = _mm_unpacklo_epi8(bytes8(p), bytes8(p + rowBytes))
                        let u23 = _mm_unpacklo_epi8(bytes8(p + 2 &* rowBytes), bytes8(p + 3 &* rowBytes))
                        let w = _mm256_set_m128i(_mm_unpackhi_epi16(u01, u23), _mm_unpacklo_epi16(u01, u23))
                        let e = _mm256_and_si256(w, low), o = _mm256_and_si256(_mm256_srli_epi16(w, 4), low)

        """
        for h in hs {
            s += "                let q\(h) = _mm256_set1_epi32((qb + (\(h == 0 ? "" : "d &* \(h) &+ ")quad &* 4)).loadUnaligned(as: Int32.self))\n"
            s += "                a\(h)e = keyProducts(a\(h)e, e, q\(h)); a\(h)o = keyProducts(a\(h)o, o, q\(h))\n"
        }
        s += """
                        p += 4 &* rowBytes
                    }

        """
        for h in hs {
            s += """
                        let s\(h) = SIMD8<Float>(repeating: qs[\(h == 0 ? "" : "blocks &* \(h) &+ ")b])
                        let t\(h) = UnsafeMutableRawPointer(tmp + \(h * 16))
                        t\(h).storeBytes(of: t\(h).loadUnaligned(as: SIMD8<Float>.self).addingProduct(s\(h), keySums(a\(h)e)), as: SIMD8<Float>.self)
                        t\(h).storeBytes(of: t\(h).loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self).addingProduct(s\(h), keySums(a\(h)o)), toByteOffset: 32, as: SIMD8<Float>.self)

            """
        }
        // Even and odd tokens zipped back into token order 8 at a time (`vunpcklps`/`vunpckhps`
        // interleave within 128-bit halves; the halves are then regrouped): the same additions and
        // multiplications as the scalar loop this replaces, which LLVM left scalar.
        s += "        }\n        let scale8 = SIMD8<Float>(repeating: scale)\n"
        for h in hs {
            s += """
                    let o\(h) = UnsafeMutableRawPointer(out + (\(h == 0 ? "" : "stride &* \(h) &+ ")half &* 16)), b\(h) = SIMD8<Float>(repeating: bias[\(h)])
                    let e\(h) = (UnsafeRawPointer(tmp + \(h * 16)).loadUnaligned(as: SIMD8<Float>.self) + b\(h)) * scale8
                    let d\(h) = (UnsafeRawPointer(tmp + \(h * 16 + 8)).loadUnaligned(as: SIMD8<Float>.self) + b\(h)) * scale8
                    let l\(h) = _mm256_unpacklo_ps(e\(h), d\(h)), h\(h) = _mm256_unpackhi_ps(e\(h), d\(h))
                    o\(h).storeBytes(of: SIMD8(lowHalf: l\(h).lowHalf, highHalf: h\(h).lowHalf), as: SIMD8<Float>.self)
                    o\(h).storeBytes(of: SIMD8(lowHalf: l\(h).highHalf, highHalf: h\(h).highHalf), toByteOffset: 32, as: SIMD8<Float>.self)

            """
        }
        return s + "    }\n#endif\n}\n#endif\n"
    }

    /// The integer key kernel's body with AVX-512 VNNI: a quad of channel rows read whole (16
    /// bytes = the group's 32 tokens) and interleaved into one 512-bit vector, so each head takes
    /// one `vpdpbusd` per nibble half and quad where the 256-bit kernel takes two (a half of 16
    /// tokens at a time). Per token the same integer sums, converted and accumulated over the
    /// 32-channel blocks in the same order: bit-identical.
    /// With AVX-512 VBMI the interleave is one two-table byte permute (`vpermt2b`) of the quad's
    /// first 64 bytes and its last row, in place of four row loads, eight unpacks and three
    /// inserts; `rowBytes` is then 20 (4-bit rows, as KeyProductRounding requires), which the
    /// permute's indices assume, and both loads stay inside the quad's 80 bytes.
    static func wideIntegerKeys(heads: Int) -> String {
        let hs = 0..<heads
        // Byte 4i + k of the interleaved vector is byte i of row k: rows 0–2 from the 64 bytes
        // at row 0's codes (row k at 20k), row 3 from the second table (indices 64 + i).
        let interleave = (0..<16).flatMap { i in (0..<4).map { k in k < 3 ? 20 * k + i : 64 + i } }
        var s = """
            // The odd tokens' nibbles stay in place, read as 16·code (one AND instead of a shift and
            // an AND): vpdpbusd's Int32 sums take 8·4·240·127 per block easily, and every odd-token
            // sum in `tmp` is then exactly 16 times the shifted one (a power of two commutes with
            // f32 rounding), undone by the output's ×1/16 — the same logits, bit for bit.
            let low = _mm512_set1_epi8(15), high = _mm512_set1_epi8(-16)
                @inline(__always) func row(_ p: UnsafeRawPointer) -> __m128i { unsafeBitCast(p.loadUnaligned(as: SIMD16<UInt8>.self), to: __m128i.self) }
            #if KVPLAN_AVX512VBMI
                let interleave = unsafeBitCast(SIMD64<UInt8>(\(interleave.map(String.init).joined(separator: ", "))), to: __m512i.self)
            #endif
                let blocks = d &>> 5
                // The logits' f32 sums stay in registers across the blocks (the same FMAs in the
                // same order as through a buffer in memory: bit-identical, 2 KiB fewer stores).
                var \(hs.map { "t\($0)e = _mm512_setzero_ps(), t\($0)o = _mm512_setzero_ps()" }.joined(separator: ", "))
                for b in 0..<blocks {
                    var \(hs.map { "a\($0)e = _mm512_setzero_si512(), a\($0)o = _mm512_setzero_si512()" }.joined(separator: ", "))
                    var p = group + (b &* 32 &* rowBytes &+ 4)
                    let qb = UnsafeRawPointer(q8 + b &* 32)
                    for quad in 0..<8 {
                        // The quad's share of the prefetches (80 bytes: two lines cover it), spread
                        // over the products: issued as a burst per group they filled the miss
                        // queue and stalled the core (+4% at DRAM size, measured; Docs/benchmarks.md).
                        let ahead4 = ahead + (b &* 8 &+ quad) &* (4 &* rowBytes)
                        prefetchLine(ahead4); prefetchLine(ahead4 + 2 &* rowBytes)
                        prefetchLineL2(ahead4 + 2 &* d &* rowBytes); prefetchLineL2(ahead4 + (2 &* d &+ 2) &* rowBytes)
                    #if KVPLAN_AVX512VBMI
                        let w = _mm512_permutex2var_epi8(_mm512_loadu_si512(p), interleave, _mm512_castsi128_si512(row(p + 3 &* rowBytes)))
                    #else
                        let r0 = row(p), r1 = row(p + rowBytes), r2 = row(p + 2 &* rowBytes), r3 = row(p + 3 &* rowBytes)
                        let l01 = _mm_unpacklo_epi8(r0, r1), h01 = _mm_unpackhi_epi8(r0, r1), l23 = _mm_unpacklo_epi8(r2, r3), h23 = _mm_unpackhi_epi8(r2, r3)
                        let w = __m512i(lowHalf: _mm256_set_m128i(_mm_unpackhi_epi16(l01, l23), _mm_unpacklo_epi16(l01, l23)),
                                        highHalf: _mm256_set_m128i(_mm_unpackhi_epi16(h01, h23), _mm_unpacklo_epi16(h01, h23)))
                    #endif
                        let e = _mm512_and_si512(w, low), o = _mm512_and_si512(w, high)

        """
        for h in hs {
            s += "                let q\(h) = _mm512_set1_epi32((qb + (\(h == 0 ? "" : "d &* \(h) &+ ")quad &* 4)).loadUnaligned(as: Int32.self))\n"
            s += "                a\(h)e = _mm512_dpbusd_epi32(a\(h)e, e, q\(h)); a\(h)o = _mm512_dpbusd_epi32(a\(h)o, o, q\(h))\n"
        }
        s += "                p += 4 &* rowBytes\n            }\n"
        for h in hs {
            s += """
                        let s\(h) = _mm512_set1_ps(qs[\(h == 0 ? "" : "blocks &* \(h) &+ ")b])
                        t\(h)e = _mm512_fmadd_ps(s\(h), _mm512_cvtepi32_ps(a\(h)e), t\(h)e)
                        t\(h)o = _mm512_fmadd_ps(s\(h), _mm512_cvtepi32_ps(a\(h)o), t\(h)o)

            """
        }
        s += """
                }
                // Even tokens (e) and odd (o, ×1/16 exactly) zipped back into token order, 16
                // logits per store (the scalar loop it replaces issued 128 of each per group).
                let scaleLanes = _mm512_set1_ps(scale), sixteenth = _mm512_set1_ps(0.0625)

        """ + zipIndices(indent: "        ")
        for h in hs {
            s += """
                    let o\(h) = out + \(h == 0 ? "0" : "stride &* \(h)"), b\(h) = _mm512_set1_ps(bias[\(h)])
                    let e\(h) = _mm512_mul_ps(_mm512_add_ps(t\(h)e, b\(h)), scaleLanes)
                    let d\(h) = _mm512_mul_ps(_mm512_add_ps(_mm512_mul_ps(t\(h)o, sixteenth), b\(h)), scaleLanes)
                    _mm512_storeu_ps(o\(h), _mm512_permutex2var_ps(e\(h), zipLow, d\(h)))
                    _mm512_storeu_ps(o\(h) + 16, _mm512_permutex2var_ps(e\(h), zipHigh, d\(h)))

            """
        }
        return s
    }
}
