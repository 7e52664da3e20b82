// Decode attention's building blocks in every Kernels.swift: code unpacking, a vectorised exp
// and masked slot softmax, and blocked kernels over quantised KV segments.
//
// A quantised segment is compute-bound, not memory-bound, once GQA shares it between heads: at 4
// bits and 4 query heads per KV head every byte feeds 8 FMAs per side. So the blocked kernels
// keep register accumulators for up to 4 heads × 16 lanes (tokens for keys, channels for values;
// 2 heads × 32 at 2 bits), unpack each 8-byte chunk of codes once for all of them (widened to
// 32-bit lanes, then a constant shift and mask per lane set, then converted), and move
// dequantisation out of the inner loop into per-channel query scales (keys) and per-token weights
// (values), computed once per group. Lane set L of a group holds codes L%k, L%k + k, … of a chunk
// (k codes per byte), so accumulators are stored whole to a scratch buffer and scattered from
// there: scattering lanes straight from registers let LLVM interleave the accumulators inside the
// loop (4× slower, measured). Kernels are generated per (bits, heads) with their accumulators as
// named variables, and only the variants a schedule calls are emitted. They are not inlined into
// the attention kernel: inlined, with its constants, LLVM split the accumulators into 128-bit
// halves, shuffled and spilled them (the whole kernel ran at half the speed, measured).
//
// The vectorised exp (expv) is shared with the row-wise kernels: ElementwiseHelpers.swift.

extension SwiftEmitter {
    /// The attention helpers, with the blocked kernels `kernels` calls (named
    /// `keyGroupLogitsB<bits>H<heads>` / `valueGroupAccumulateB<bits>H<heads>`, and the integer
    /// `keyGroupLogitsI8H<heads>`).
    static func attentionHelpers(for kernels: String) -> String {
        var text = fixedAttentionHelpers
        var used = Set<String>()
        for kind in ["keyGroupLogits", "valueGroupAccumulate"] {
            var rest = kernels[...]
            while let r = rest.range(of: kind + "B") {
                let digits = rest[r.upperBound...].prefix { $0.isNumber || $0 == "H" }
                used.insert(kind + "B" + digits)
                rest = rest[r.upperBound...]
            }
        }
        for name in used.sorted() {
            let parts = name.split(separator: "B").last!.split(separator: "H").map { Int($0)! }
            text += name.hasPrefix("key") ? keyGroupKernel(bits: parts[0], heads: parts[1]) : valueGroupKernel(bits: parts[0], heads: parts[1])
        }
        for heads in 1...4 where kernels.contains("slotSoftmaxH\(heads)(") { text += groupSoftmax(heads: heads) }
        for heads in 1...4 where kernels.contains("scaleQueriesH\(heads)(") { text += queryScaling(heads: heads) }
        for heads in 1...4 where kernels.contains("scaleWeightsH\(heads)(") { text += weightScaling(heads: heads) }
        if kernels.contains("roundQueries(") || kernels.contains("roundWeights(") { text += blockMaximum }
        if kernels.contains("roundQueries(") { text += queryRounding }
        if kernels.contains("prepareQueriesH4(") || kernels.contains("prepareWeightsH4(") { text += magnitudeMaximum }
        if kernels.contains("prepareQueriesH4(") { text += fusedQueryKernel }
        for heads in 1...4 where kernels.contains("keyGroupLogitsI8H\(heads)(") { text += integerKeyKernel(heads: heads) }
        if kernels.contains("roundWeights(") { text += weightRounding }
        for heads in 1...4 where kernels.contains("valueGroupAccumulateI16H\(heads)(") { text += integerValueKernel(heads: heads) }
        if kernels.contains("prepareWeightsH4(") { text += tokenMajorWeightKernels }
        return text
    }

    /// max(m, |x|) lane by lane, for the block maxima of prepareQueriesH4 and prepareWeightsH4.
    static let magnitudeMaximum = """

    #if KVPLAN_AVX512
    /// max(m, |x|) in each lane, m ≥ 0: one `vrangeps` with AVX-512 DQ (KVPlanPrefetch's
    /// kvplan_max_magnitude; Swift cannot import `_mm512_range_ps`, a macro), else `vandps` + `vmaxps`.
    /// The same value either way (a maximum is exact); only NaN lanes may differ.
    @inline(__always)
    func maxMagnitude(_ m: __m512, _ x: __m512) -> __m512 {
    #if KVPLAN_AVX512DQ
        kvplan_max_magnitude(m, x)
    #else
        _mm512_max_ps(m, _mm512_abs_ps(x))
    #endif
    }
    #endif

    """

    /// max|x| over a block of 32 values, for the roundings of queries (int8) and weights (int16).
    static let blockMaximum = """

    #if KVPLAN_AVX2
    /// max|x[i]| for i < 32: two 512-bit vectors with AVX-512, four 256-bit ones otherwise
    /// (the maximum is exact in any order, so both give the same value).
    @inline(__always)
    func absoluteMaximum32(_ x: UnsafePointer<Float>) -> Float {
    #if KVPLAN_AVX512
        return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x)), _mm512_abs_ps(_mm512_loadu_ps(x + 16))))
    #else
        let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF))
        @inline(__always) func load(_ i: Int) -> __m256 { _mm256_and_ps(_mm256_loadu_ps(x + i), magnitude) }
        var m = _mm256_max_ps(_mm256_max_ps(load(0), load(8)), _mm256_max_ps(load(16), load(24)))
        m = _mm256_max_ps(m, SIMD8(m[4], m[5], m[6], m[7], m[0], m[1], m[2], m[3]))
        m = _mm256_max_ps(m, SIMD8(m[2], m[3], m[0], m[1], m[6], m[7], m[4], m[5]))
        m = _mm256_max_ps(m, SIMD8(m[1], m[0], m[3], m[2], m[5], m[4], m[7], m[6]))
        return m[0]
    #endif
    }
    #endif

    """

    /// Heads one blocked kernel serves at `bits`: 2 accumulators per head per pass for 4 and 8
    /// bits (4 heads), 4 for 2 bits (2 heads) — at most 8 accumulator registers.
    static func headsPerBlock(bits: Int) -> Int { bits == 2 ? 2 : 4 }

    static let fixedAttentionHelpers = """
    /// Softmax over `n` slot logits at `l` (slots with negative occupancy weigh 0) and the new
    /// token's logit: normalises `l` in place and returns the new token's weight. Masks are bit
    /// patterns (occupancy's sign smeared over the lane): SIMDMask selects compiled lane by lane
    /// through the stack (measured: 85% of the kernel's time).
    @inline(never)
    func slotSoftmax(_ l: UnsafeMutablePointer<Float>, _ occ: UnsafePointer<Int32>, _ n: Int, newLogit: Float) -> Float {
        @inline(__always) func empty(_ i: Int) -> SIMD8<Int32> { UnsafeRawPointer(occ + i).loadUnaligned(as: SIMD8<Int32>.self) &>> 31 }
        @inline(__always) func logit(_ i: Int) -> SIMD8<Float> { UnsafeRawPointer(l + i).loadUnaligned(as: SIMD8<Float>.self) }
        @inline(__always) func bits(_ x: SIMD8<Float>) -> SIMD8<Int32> { unsafeBitCast(x, to: SIMD8<Int32>.self) }
        let negativeInfinity = bits(SIMD8<Float>(repeating: -.infinity))
        var mv = SIMD8<Float>(repeating: newLogit)
        var i = 0
        while i &+ 8 <= n {
            let e = empty(i)
            mv = lanesMax(mv, unsafeBitCast((bits(logit(i)) & ~e) | (negativeInfinity & e), to: SIMD8<Float>.self))
            i &+= 8
        }
        var m = mv.max()
        while i < n { if occ[i] >= 0 { m = max(m, l[i]) }; i &+= 1 }
        var tv = SIMD8<Float>()
        i = 0
        while i &+ 8 <= n {
            let e = unsafeBitCast(bits(expv(logit(i) - m)) & ~empty(i), to: SIMD8<Float>.self)
            UnsafeMutableRawPointer(l + i).storeBytes(of: e, as: SIMD8<Float>.self)
            tv += e
            i &+= 8
        }
        var total = tv.sum()
        while i < n { l[i] = occ[i] >= 0 ? exp(l[i] - m) : 0; total += l[i]; i &+= 1 }
        let eNew = exp(newLogit - m)
        let inv = 1 / (total + eNew)
        i = 0
        while i &+ 8 <= n { UnsafeMutableRawPointer(l + i).storeBytes(of: logit(i) * inv, as: SIMD8<Float>.self); i &+= 8 }
        while i < n { l[i] *= inv; i &+= 1 }
        return eNew * inv
    }

    /// Per-head sums of products (the scale passes' bias terms) kept in eight lanes for up to four
    /// heads and reduced once at the end: a horizontal sum per eight channels and head cost as
    /// much as the products. Heads past four add to `bias` directly. Starts `bias` at zero.
    struct HeadSums {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        let bias: UnsafeMutablePointer<Float>, heads: Int
        @inline(__always) init(_ bias: UnsafeMutablePointer<Float>, heads: Int) {
            self.bias = bias
            self.heads = heads
            for h in 0..<heads { bias[h] = 0 }
        }
        @inline(__always) mutating func add(_ h: Int, _ x: SIMD8<Float>, _ y: SIMD8<Float>) {
            switch h {
            case 0: s0.addProduct(x, y)
            case 1: s1.addProduct(x, y)
            case 2: s2.addProduct(x, y)
            case 3: s3.addProduct(x, y)
            default: bias[h] += (x * y).sum()
            }
        }
        /// Adds the lane sums to `bias`.
        @inline(__always) func finish() {
            for (h, s) in [s0, s1, s2, s3].prefix(heads).enumerated() { bias[h] += s.sum() }
        }
    }

    /// Eight fp16 values in the low 16 bits of each lane, as f32 (blockScale lane by lane).
    @inline(__always)
    func halves(_ h: SIMD8<UInt32>) -> SIMD8<Float> {
        let magnitude = unsafeBitCast((h & 0x7FFF) &<< 13, to: SIMD8<Float>.self) * 0x1p112
        return unsafeBitCast(unsafeBitCast(magnitude, to: SIMD8<UInt32>.self) | ((h & 0x8000) &<< 16), to: SIMD8<Float>.self)
    }

    /// halves over sixteen lanes.
    @inline(__always)
    func halves16(_ h: SIMD16<UInt32>) -> SIMD16<Float> {
        let magnitude = unsafeBitCast((h & 0x7FFF) &<< 13, to: SIMD16<Float>.self) * 0x1p112
        return unsafeBitCast(unsafeBitCast(magnitude, to: SIMD16<UInt32>.self) | ((h & 0x8000) &<< 16), to: SIMD16<Float>.self)
    }

    /// The 4-byte headers (fp16 scale, fp16 zero) of eight rows `rowBytes` apart, one per lane.
    @inline(__always)
    func headers(_ p: UnsafeRawPointer, rowBytes: Int) -> SIMD8<UInt32> {
        var raw = SIMD8<UInt32>()
        for i in 0..<8 { raw[i] = (p + i &* rowBytes).loadUnaligned(as: UInt32.self) }
        return raw
    }

    /// For one key group of a head's `d` channel rows (each: fp16 scale, fp16 zero, codes):
    /// scaled[h·d + c] = q_h[c]·scale_c and bias[h] = Σ_c q_h[c]·zero_c, for `heads` heads;
    /// eight channels at a time (this pass cost as much as the blocked kernel when scalar).
    @inline(__always)
    func scaleQueries(_ q: UnsafePointer<Float>, heads: Int, _ group: UnsafeRawPointer, rowBytes: Int, d: Int,
                      _ scaled: UnsafeMutablePointer<Float>, _ bias: UnsafeMutablePointer<Float>) {
        var sums = HeadSums(bias, heads: heads)
        var c = 0
        while c &+ 8 <= d {
            let raw = headers(group + c &* rowBytes, rowBytes: rowBytes)
            let s = halves(raw & 0xFFFF), z = halves(raw &>> 16)
            for h in 0..<heads {
                let qv = UnsafeRawPointer(q + (h &* d &+ c)).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(scaled + (h &* d &+ c)).storeBytes(of: qv * s, as: SIMD8<Float>.self)
                sums.add(h, qv, z)
            }
            c &+= 8
        }
        sums.finish()
        while c < d {
            let p = group + c &* rowBytes
            let s = blockScale(p), z = blockScale(p + 2)
            for h in 0..<heads {
                let qc = q[h &* d &+ c]
                scaled[h &* d &+ c] = qc * s
                bias[h] += qc * z
            }
            c &+= 1
        }
    }

    /// For one value channel group over `tokens` rows (each: fp16 scale, fp16 zero, codes):
    /// scaled[h·tokens + t] = w_h[t]·scale_t and bias[h] = Σ_t w_h[t]·zero_t, with w_h[t] the
    /// normalised weight at `weights[h·stride + t]` (0 where occupancy is negative); eight
    /// tokens at a time, empty slots masked to weight 0.
    @inline(__always)
    func scaleWeights(_ weights: UnsafePointer<Float>, stride: Int, _ occ: UnsafePointer<Int32>, heads: Int, _ rows: UnsafeRawPointer,
                      rowBytes: Int, tokens: Int, _ scaled: UnsafeMutablePointer<Float>, _ bias: UnsafeMutablePointer<Float>) {
        var sums = HeadSums(bias, heads: heads)
        var t = 0
        while t &+ 8 <= tokens {
            let raw = headers(rows + t &* rowBytes, rowBytes: rowBytes)
            let keep = unsafeBitCast(~(UnsafeRawPointer(occ + t).loadUnaligned(as: SIMD8<Int32>.self) &>> 31), to: SIMD8<UInt32>.self)
            let s = halves(raw & 0xFFFF), z = halves(raw &>> 16)
            for h in 0..<heads {
                let w = unsafeBitCast(unsafeBitCast(UnsafeRawPointer(weights + (h &* stride &+ t)).loadUnaligned(as: SIMD8<Float>.self),
                                                    to: SIMD8<UInt32>.self) & keep, to: SIMD8<Float>.self)
                UnsafeMutableRawPointer(scaled + (h &* tokens &+ t)).storeBytes(of: w * s, as: SIMD8<Float>.self)
                sums.add(h, w, z)
            }
            t &+= 8
        }
        sums.finish()
        while t < tokens {
            guard occ[t] >= 0 else {
                for h in 0..<heads { scaled[h &* tokens &+ t] = 0 }
                t &+= 1
                continue
            }
            let p = rows + t &* rowBytes
            let s = blockScale(p), z = blockScale(p + 2)
            for h in 0..<heads {
                let w = weights[h &* stride &+ t]
                scaled[h &* tokens &+ t] = w * s
                bias[h] += w * z
            }
            t &+= 1
        }
    }

    /// Scaled logits of one head against `tokens` fp16 key rows of `channels` (the head's `d` from `first`).
    @inline(__always)
    func halfKeyLogits(_ q: UnsafePointer<Float>, _ keys: UnsafeRawPointer, tokens: Int, channels: Int, first: Int, d: Int, scale: Float,
                       _ out: UnsafeMutablePointer<Float>) {
        for t in 0..<tokens { out[t] = dotF16(q, keys + (t &* channels &+ first) &* 2, d) * scale }
    }

    /// The `n` codes of `bits` bits packed LSB-first at `p`, as f32.
    @inline(__always)
    func unpackCodes(_ p: UnsafeRawPointer, count n: Int, bits: Int, _ out: UnsafeMutablePointer<Float>) {
        let mask = (1 &<< bits) &- 1, perByte = 8 / bits
        var t = 0, byte = 0
        while t < n {
            let b = Int(p.load(fromByteOffset: byte, as: UInt8.self))
            var sub = 0
            while sub < perByte && t < n {
                out[t] = Float((b >> (sub &* bits)) & mask)
                sub &+= 1
                t &+= 1
            }
            byte &+= 1
        }
    }

    /// Scaled logits of the `heads` query heads sharing one KV head (queries `d` apart, logits
    /// `stride` apart) against a quantised key segment (KIVI: per channel, groups of `group`
    /// tokens, each channel's fp16 scale and zero then its codes LSB-first). Each channel's codes
    /// are unpacked once for all heads, and dequantisation is folded into the dot product:
    /// Σ_c (q_c·s_c)·code_ct + Σ_c q_c·z_c.
    @inline(__always)
    func quantizedKeyLogits(_ q: UnsafePointer<Float>, heads: Int, _ segment: UnsafeRawPointer, tokens: Int, channels: Int, first: Int, d: Int,
                            bits: Int, group: Int, scale: Float, _ out: UnsafeMutablePointer<Float>, stride: Int,
                            codes: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>) {
        var t0 = 0, at = 0
        while t0 < tokens {
            let n = min(group, tokens &- t0)
            let rowBytes = 4 &+ (n &* bits &+ 7) >> 3
            for h in 0..<heads {
                bias[h] = 0
                let o = out + (h &* stride &+ t0)
                for t in 0..<n { o[t] = 0 }
            }
            for c in 0..<d {
                let p = segment + (at &+ (first &+ c) &* rowBytes)
                let s = half(p, 0), z = half(p, 1)
                unpackCodes(p + 4, count: n, bits: bits, codes)
                for h in 0..<heads {
                    let qc = q[h &* d &+ c]
                    let qs = qc * s
                    bias[h] += qc * z
                    let o = out + (h &* stride &+ t0)
                    for t in 0..<n { o[t] += qs * codes[t] }
                }
            }
            for h in 0..<heads {
                let o = out + (h &* stride &+ t0)
                for t in 0..<n { o[t] = (o[t] + bias[h]) * scale }
            }
            at &+= channels &* rowBytes
            t0 &+= n
        }
    }

    /// y_h[0..<dv] += weight_h × one fp16 value row's channels from `first`, for `heads` heads
    /// (outputs `dv` apart, weights at `weights[h]`).
    @inline(__always)
    func halfValueAccumulate(_ row: UnsafeRawPointer, first: Int, dv: Int, heads: Int, weights: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        var i = 0
        while i &+ 8 <= dv {
            let v = SIMD8<Float>(row.loadUnaligned(fromByteOffset: (first &+ i) &* 2, as: SIMD8<Float16>.self))
            for h in 0..<heads {
                let yh = UnsafeMutableRawPointer(y + (h &* dv &+ i))
                yh.storeBytes(of: yh.loadUnaligned(as: SIMD8<Float>.self).addingProduct(SIMD8<Float>(repeating: weights[h]), v), as: SIMD8<Float>.self)
            }
            i &+= 8
        }
        while i < dv {
            let v = half(row, first &+ i)
            for h in 0..<heads { y[h &* dv &+ i] += weights[h] * v }
            i &+= 1
        }
    }

    /// y_h[0..<dv] += weight_h × one quantised value row's channels from `first` (per token,
    /// groups of `group` channels, each group's fp16 scale and zero then its codes LSB-first);
    /// each channel group's codes are unpacked once for all heads.
    @inline(__always)
    func quantizedValueAccumulate(_ row: UnsafeRawPointer, first: Int, dv: Int, bits: Int, group: Int, heads: Int, weights: UnsafePointer<Float>,
                                  _ y: UnsafeMutablePointer<Float>, codes: UnsafeMutablePointer<Float>) {
        let full = 4 &+ (group &* bits &+ 7) >> 3
        var c = 0
        while c < dv {
            let channel = first &+ c
            let i0 = channel % group
            let p = row + (channel / group) &* full
            let s = half(p, 0), z = half(p, 1)
            let n = min(group &- i0, dv &- c)
            unpackCodes(p + 4, count: i0 &+ n, bits: bits, codes)
            for h in 0..<heads {
                let w = weights[h], ws = w * s, wz = w * z
                let yh = y + (h &* dv &+ c)
                let code = codes + i0
                for i in 0..<n { yh[i] += ws * code[i] + wz }
            }
            c &+= n
        }
    }

    """

    /// Lanes of a group of 32 codes at `bits`: 4 sets of 8 lanes. Set L reads the 8-byte chunk
    /// `chunk`, shifted right by `shift` and masked; lane i of it is code `index(i)` of the group.
    struct CodeSet {
        let chunk: Int, shift: Int, mask: Int, perByte: Int, first: Int
        init(_ set: Int, bits: Int) {
            perByte = 8 / bits
            chunk = set / perByte
            shift = (set % perByte) * bits
            mask = (1 << bits) - 1
            first = chunk * 8 * perByte + set % perByte
        }
        /// Swift for the set's 8 codes as f32 from the widened chunk `r<chunk>`.
        var load: String {
            var v = "r\(chunk)"
            if shift > 0 { v = "(\(v) &>> \(shift))" }
            if mask != 255 { v = "(\(v) & \(mask))" }
            return "SIMD8<Float>(\(v))"
        }
    }

    /// Swift widening the 8-byte chunks `sets` read at `p` to 32-bit lanes (`r<chunk>`).
    static func widen(_ sets: [Int], bits: Int, _ p: String) -> String {
        let chunks = Set(sets.map { CodeSet($0, bits: bits).chunk }).sorted()
        return chunks.map { "            let r\($0) = SIMD8<Int32>(truncatingIfNeeded: (\(p) + \($0 * 8)).loadUnaligned(as: SIMD8<UInt8>.self))\n" }.joined()
    }

    /// Passes over a group: sets per pass (2, or 4 at 2 bits — one 8-byte chunk's lanes).
    static func passes(bits: Int) -> [[Int]] { bits == 2 ? [[0, 1, 2, 3]] : [[0, 1], [2, 3]] }

    /// slotSoftmax for the `heads` (1–4) query heads of one KV head at once, named
    /// `slotSoftmaxH<heads>`, plus the attention each slot received (their sum): one pass over the
    /// slots per step — occupancy loaded once for all heads, and the normalisation and the sums
    /// in one pass — instead of three passes per head and one more for the sums. Each head's
    /// operations are slotSoftmax's in the same order (the sums too: 0 + w₀ + w₁ + …), so the
    /// results are bit-identical.
    static func groupSoftmax(heads: Int) -> String {
        let hs = 0..<heads
        func each(_ f: (Int) -> String) -> String { hs.map(f).joined() }
        return """

        /// Softmax of \(heads) heads' slot logits (`stride` apart) and new-token logits (`logits[h]`,
        /// replaced by the new token's weights), as slotSoftmax for each; rec[s] = Σ_h weight_h[s].
        /// Given `inverses`, stops before the normalisation: the rows keep exp(l − m_h) (0 for empty
        /// slots), inverses[h] = 1/Z_h, and `rec` is left to the caller (prepareWeightsH4).
        @inline(never)
        func slotSoftmaxH\(heads)(_ l: UnsafeMutablePointer<Float>, stride: Int, _ occ: UnsafePointer<Int32>, _ n: Int,
                                _ logits: UnsafeMutablePointer<Float>, _ rec: UnsafeMutablePointer<Float>, inverses: UnsafeMutablePointer<Float>? = nil) {
            @inline(__always) func empty(_ i: Int) -> SIMD8<Int32> { UnsafeRawPointer(occ + i).loadUnaligned(as: SIMD8<Int32>.self) &>> 31 }
            @inline(__always) func logit(_ h: Int, _ i: Int) -> SIMD8<Float> { UnsafeRawPointer(l + (h &* stride &+ i)).loadUnaligned(as: SIMD8<Float>.self) }
            @inline(__always) func store(_ h: Int, _ i: Int, _ v: SIMD8<Float>) { UnsafeMutableRawPointer(l + (h &* stride &+ i)).storeBytes(of: v, as: SIMD8<Float>.self) }
            @inline(__always) func bits(_ x: SIMD8<Float>) -> SIMD8<Int32> { unsafeBitCast(x, to: SIMD8<Int32>.self) }
            // 16 slots at a time first (512-bit with AVX-512), then 8: the sums still add 8 lanes
            // at a time in slot order, so the results do not depend on the width.
            @inline(__always) func empty16(_ i: Int) -> SIMD16<Int32> { UnsafeRawPointer(occ + i).loadUnaligned(as: SIMD16<Int32>.self) &>> 31 }
            @inline(__always) func logit16(_ h: Int, _ i: Int) -> SIMD16<Float> { UnsafeRawPointer(l + (h &* stride &+ i)).loadUnaligned(as: SIMD16<Float>.self) }
            @inline(__always) func store16(_ h: Int, _ i: Int, _ v: SIMD16<Float>) { UnsafeMutableRawPointer(l + (h &* stride &+ i)).storeBytes(of: v, as: SIMD16<Float>.self) }
            @inline(__always) func bits16(_ x: SIMD16<Float>) -> SIMD16<Int32> { unsafeBitCast(x, to: SIMD16<Int32>.self) }
            let negativeInfinity = bits(SIMD8<Float>(repeating: -.infinity)), negativeInfinity16 = bits16(SIMD16<Float>(repeating: -.infinity))
            var \(hs.map { "mw\($0) = SIMD16<Float>(repeating: logits[\($0)])" }.joined(separator: ", "))
            var i = 0
            while i &+ 16 <= n {
                let e = empty16(i)
        \(each { "        mw\($0) = lanesMax(mw\($0), unsafeBitCast((bits16(logit16(\($0), i)) & ~e) | (negativeInfinity16 & e), to: SIMD16<Float>.self))\n" })            i &+= 16
            }
            var \(hs.map { "mv\($0) = lanesMax(mw\($0).lowHalf, mw\($0).highHalf)" }.joined(separator: ", "))
            while i &+ 8 <= n {
                let e = empty(i)
        \(each { "        mv\($0) = lanesMax(mv\($0), unsafeBitCast((bits(logit(\($0), i)) & ~e) | (negativeInfinity & e), to: SIMD8<Float>.self))\n" })            i &+= 8
            }
            var \(hs.map { "m\($0) = mv\($0).max()" }.joined(separator: ", "))
            let tail = i
        \(each { "    i = tail\n    while i < n { if occ[i] >= 0 { m\($0) = max(m\($0), l[\($0) &* stride &+ i]) }; i &+= 1 }\n" })    var \(hs.map { "tv\($0) = SIMD8<Float>()" }.joined(separator: ", "))
            i = 0
            while i &+ 16 <= n {
                let keep = ~empty16(i)
        \(each { "        let e\($0) = unsafeBitCast(bits16(expv(logit16(\($0), i) - m\($0))) & keep, to: SIMD16<Float>.self)\n        store16(\($0), i, e\($0))\n        tv\($0) += e\($0).lowHalf\n        tv\($0) += e\($0).highHalf\n" })            i &+= 16
            }
            while i &+ 8 <= n {
                let keep = ~empty(i)
        \(each { "        let e\($0) = unsafeBitCast(bits(expv(logit(\($0), i) - m\($0))) & keep, to: SIMD8<Float>.self)\n        store(\($0), i, e\($0))\n        tv\($0) += e\($0)\n" })            i &+= 8
            }
        \(each { h in "    var total\(h) = tv\(h).sum()\n    i = tail\n    while i < n { l[\(h) &* stride &+ i] = occ[i] >= 0 ? exp(l[\(h) &* stride &+ i] - m\(h)) : 0; total\(h) += l[\(h) &* stride &+ i]; i &+= 1 }\n    let eNew\(h) = exp(logits[\(h)] - m\(h))\n    let inv\(h) = 1 / (total\(h) + eNew\(h))\n    logits[\(h)] = eNew\(h) * inv\(h)\n" })    if let inverses {
        \(each { "        inverses[\($0)] = inv\($0)\n" })        return
            }
            i = 0
            while i &+ 16 <= n {
                var r = SIMD16<Float>()
        \(each { "        let w\($0) = logit16(\($0), i) * inv\($0)\n        store16(\($0), i, w\($0))\n        r += w\($0)\n" })            UnsafeMutableRawPointer(rec + i).storeBytes(of: r, as: SIMD16<Float>.self)
                i &+= 16
            }
            while i &+ 8 <= n {
                var r = SIMD8<Float>()
        \(each { "        let w\($0) = logit(\($0), i) * inv\($0)\n        store(\($0), i, w\($0))\n        r += w\($0)\n" })            UnsafeMutableRawPointer(rec + i).storeBytes(of: r, as: SIMD8<Float>.self)
                i &+= 8
            }
            while i < n {
                var r: Float = 0
        \(each { "        l[\($0) &* stride &+ i] *= inv\($0)\n        r += l[\($0) &* stride &+ i]\n" })            rec[i] = r
                i &+= 1
            }
        }

        """
    }

    /// scaleQueries for a fixed `heads` (1–4), named `scaleQueriesH<heads>`: one accumulator per
    /// head, no per-head switch. Inlined into the attention kernel, the generic pass came out as
    /// 128-bit pieces — queries loaded 8 bytes at a time and shuffled together, the bias sums split
    /// into halves (measured in the profile). The same operations in the same order: bit-identical.
    static func queryScaling(heads: Int) -> String {
        let hs = 0..<heads
        var s = """

        /// scaleQueries for \(heads) head(s), not inlined.
        @inline(never)
        func scaleQueriesH\(heads)(_ q: UnsafePointer<Float>, _ group: UnsafeRawPointer, rowBytes: Int, d: Int,
                               _ scaled: UnsafeMutablePointer<Float>, _ bias: UnsafeMutablePointer<Float>) {
            var \(hs.map { "s\($0) = SIMD8<Float>()" }.joined(separator: ", "))
            var c = 0
        #if KVPLAN_AVX512
            if rowBytes == 20 {
                // 16 channels at a time, their headers picked out of four 64-byte loads (rows are
                // 20 bytes: four headers per load) instead of sixteen scalar inserts; the bias sums
                // still take 8 lanes at a time in channel order, so the results are the 8-lane pass's.
                let pick = unsafeBitCast(SIMD16<Int32>(0, 5, 10, 15, 16, 21, 26, 31, 0, 5, 10, 15, 16, 21, 26, 31), to: __m512i.self)
                while c &+ 16 <= d {
                    let p = group + c &* 20
                    let low = _mm512_permutex2var_epi32(_mm512_loadu_si512(p), pick, _mm512_loadu_si512(p + 80))
                    let high = _mm512_permutex2var_epi32(_mm512_loadu_si512(p + 160), pick, _mm512_loadu_si512(p + 240))
                    let raw = unsafeBitCast(__m512i(lowHalf: low.lowHalf, highHalf: high.lowHalf), to: SIMD16<UInt32>.self)
                    let s = halves16(raw & 0xFFFF), z = halves16(raw &>> 16)

        """
        for h in hs {
            let at = h == 0 ? "c" : "d &* \(h) &+ c"
            s += "                let q\(h) = UnsafeRawPointer(q + (\(at))).loadUnaligned(as: SIMD16<Float>.self)\n"
            s += "                UnsafeMutableRawPointer(scaled + (\(at))).storeBytes(of: q\(h) * s, as: SIMD16<Float>.self)\n"
            s += "                s\(h).addProduct(q\(h).lowHalf, z.lowHalf)\n                s\(h).addProduct(q\(h).highHalf, z.highHalf)\n"
        }
        s += """
                    c &+= 16
                }
            }
        #endif
            while c &+ 8 <= d {
                let raw = headers(group + c &* rowBytes, rowBytes: rowBytes)
                let s = halves(raw & 0xFFFF), z = halves(raw &>> 16)

        """
        for h in hs {
            let at = h == 0 ? "c" : "d &* \(h) &+ c"
            s += "        let q\(h) = UnsafeRawPointer(q + (\(at))).loadUnaligned(as: SIMD8<Float>.self)\n"
            s += "        UnsafeMutableRawPointer(scaled + (\(at))).storeBytes(of: q\(h) * s, as: SIMD8<Float>.self)\n"
            s += "        s\(h).addProduct(q\(h), z)\n"
        }
        s += "        c &+= 8\n    }\n"
        for h in hs { s += "    bias[\(h)] = 0\n    bias[\(h)] += s\(h).sum()\n" }
        s += """
            while c < d {
                let p = group + c &* rowBytes
                let s = blockScale(p), z = blockScale(p + 2)
                for h in 0..<\(heads) {
                    let qc = q[h &* d &+ c]
                    scaled[h &* d &+ c] = qc * s
                    bias[h] += qc * z
                }
                c &+= 1
            }
        }

        """
        return s
    }

    /// scaleWeights for a fixed `heads` (1–4), named `scaleWeightsH<heads>`, for the reason
    /// queryScaling gives; the same operations in the same order: bit-identical.
    static func weightScaling(heads: Int) -> String {
        let hs = 0..<heads
        var s = """

        /// scaleWeights for \(heads) head(s), not inlined.
        @inline(never)
        func scaleWeightsH\(heads)(_ weights: UnsafePointer<Float>, stride: Int, _ occ: UnsafePointer<Int32>, _ rows: UnsafeRawPointer,
                              rowBytes: Int, tokens: Int, _ scaled: UnsafeMutablePointer<Float>, _ bias: UnsafeMutablePointer<Float>) {
            var \(hs.map { "s\($0) = SIMD8<Float>()" }.joined(separator: ", "))
            var t = 0
        #if KVPLAN_AVX512
            // 16 tokens at a time; the bias sums still take 8 lanes at a time in token order, so
            // the results are the 8-lane pass's (the 8-lane loop spilled registers, measured).
            while t &+ 16 <= tokens {
                var raw = SIMD16<UInt32>()
                for i in 0..<16 { raw[i] = (rows + (t &+ i) &* rowBytes).loadUnaligned(as: UInt32.self) }
                let keep = unsafeBitCast(~(UnsafeRawPointer(occ + t).loadUnaligned(as: SIMD16<Int32>.self) &>> 31), to: SIMD16<UInt32>.self)
                let s = halves16(raw & 0xFFFF), z = halves16(raw &>> 16)

        """
        for h in hs {
            let at = h == 0 ? "t" : "stride &* \(h) &+ t", out = h == 0 ? "t" : "tokens &* \(h) &+ t"
            s += "        let w\(h) = unsafeBitCast(unsafeBitCast(UnsafeRawPointer(weights + (\(at))).loadUnaligned(as: SIMD16<Float>.self), to: SIMD16<UInt32>.self) & keep, to: SIMD16<Float>.self)\n"
            s += "        UnsafeMutableRawPointer(scaled + (\(out))).storeBytes(of: w\(h) * s, as: SIMD16<Float>.self)\n"
            s += "        s\(h).addProduct(w\(h).lowHalf, z.lowHalf)\n        s\(h).addProduct(w\(h).highHalf, z.highHalf)\n"
        }
        s += """
                t &+= 16
            }
        #endif
            while t &+ 8 <= tokens {
                let raw = headers(rows + t &* rowBytes, rowBytes: rowBytes)
                let keep = unsafeBitCast(~(UnsafeRawPointer(occ + t).loadUnaligned(as: SIMD8<Int32>.self) &>> 31), to: SIMD8<UInt32>.self)
                let s = halves(raw & 0xFFFF), z = halves(raw &>> 16)

        """
        for h in hs {
            let at = h == 0 ? "t" : "stride &* \(h) &+ t", out = h == 0 ? "t" : "tokens &* \(h) &+ t"
            s += "        let w\(h) = unsafeBitCast(unsafeBitCast(UnsafeRawPointer(weights + (\(at))).loadUnaligned(as: SIMD8<Float>.self), to: SIMD8<UInt32>.self) & keep, to: SIMD8<Float>.self)\n"
            s += "        UnsafeMutableRawPointer(scaled + (\(out))).storeBytes(of: w\(h) * s, as: SIMD8<Float>.self)\n"
            s += "        s\(h).addProduct(w\(h), z)\n"
        }
        s += "        t &+= 8\n    }\n"
        for h in hs { s += "    bias[\(h)] = 0\n    bias[\(h)] += s\(h).sum()\n" }
        s += """
            while t < tokens {
                guard occ[t] >= 0 else {
                    for h in 0..<\(heads) { scaled[h &* tokens &+ t] = 0 }
                    t &+= 1
                    continue
                }
                let p = rows + t &* rowBytes
                let s = blockScale(p), z = blockScale(p + 2)
                for h in 0..<\(heads) {
                    let w = weights[h &* stride &+ t]
                    scaled[h &* tokens &+ t] = w * s
                    bias[h] += w * z
                }
                t &+= 1
            }
        }

        """
        return s
    }

    /// A blocked key kernel at `bits` for `heads` heads over one full group of 32 tokens.
    static func keyGroupKernel(bits: Int, heads: Int) -> String {
        var s = """

        /// Scaled logits of \(heads) head(s) over one full \(bits)-bit key group of 32 tokens:
        /// out[h·stride + t] = (Σ_c scaled[h·d + c]·code_ct + bias[h])·scale, channel rows `rowBytes`
        /// apart (codes after the 4-byte scale and zero); unpacked once for all heads. Not inlined
        /// on purpose: inlined into the attention kernel, LLVM split its accumulators into 128-bit
        /// halves with shuffles and spills (measured: the whole kernel 2× slower).
        @inline(never)
        func keyGroupLogitsB\(bits)H\(heads)(_ scaled: UnsafePointer<Float>, _ group: UnsafeRawPointer, rowBytes: Int, d: Int,
                                    _ bias: UnsafePointer<Float>, scale: Float, _ out: UnsafeMutablePointer<Float>, stride: Int,
                                    _ tmp: UnsafeMutablePointer<Float>) {

        """
        for sets in passes(bits: bits) {
            s += "    do {\n"
            s += accumulation(over: "c", count: "d", row: "group + (c &* rowBytes &+ 4)", bits: bits, heads: heads, sets: sets)
            for h in 0..<heads {
                s += "        let o\(h) = out + \(h == 0 ? "0" : "stride &* \(h)"), b\(h) = bias[\(h)]\n"
                for (k, set) in sets.enumerated() {
                    let cs = CodeSet(set, bits: bits)
                    s += "        for i in 0..<8 { o\(h)[\(cs.first) &+ i &* \(cs.perByte)] = (tmp[\((h * sets.count + k) * 8) &+ i] + b\(h)) * scale }\n"
                }
            }
            s += "    }\n"
        }
        return s + "}\n"
    }

    /// Swift for the inner loop both blocked kernels share: over `index` in 0..<`count`, the codes
    /// of the lane sets `sets` in the row at `row` times `scaled[h·count + index]`, accumulated per
    /// head and set, then stored to `tmp`.
    static func accumulation(over index: String, count: String, row: String, bits: Int, heads: Int, sets: [Int]) -> String {
        var s = "        var " + (0..<heads).flatMap { h in sets.map { "a\(h)s\($0) = SIMD8<Float>()" } }.joined(separator: ", ") + "\n"
        s += "        for \(index) in 0..<\(count) {\n            let p = \(row)\n" + widen(sets, bits: bits, "p")
        for set in sets { s += "            let c\(set) = \(CodeSet(set, bits: bits).load)\n" }
        for h in 0..<heads {
            s += "            let w\(h) = SIMD8<Float>(repeating: scaled[\(h == 0 ? "" : "\(count) &* \(h) &+ ")\(index)])\n"
            s += "            " + sets.map { "a\(h)s\($0).addProduct(w\(h), c\($0))" }.joined(separator: "; ") + "\n"
        }
        return s + "        }\n" + storeAccumulators(heads: heads, sets: sets)
    }

    /// Swift storing every accumulator, in order, to `tmp` — whole vectors: scattering lanes
    /// straight from registers let LLVM interleave the accumulators inside the loop (4× slower).
    static func storeAccumulators(heads: Int, sets: [Int]) -> String {
        var s = ""
        for h in 0..<heads {
            for (k, set) in sets.enumerated() {
                s += "        UnsafeMutableRawPointer(tmp + \((h * sets.count + k) * 8)).storeBytes(of: a\(h)s\(set), as: SIMD8<Float>.self)\n"
            }
        }
        return s
    }

    /// A blocked value kernel at `bits` for `heads` heads over one channel group of 32.
    static func valueGroupKernel(bits: Int, heads: Int) -> String {
        var s = """

        /// y_h[0..<32] += Σ_t scaled[h·tokens + t]·code_t + bias[h] for \(heads) head(s) over one
        /// \(bits)-bit value channel group of `tokens` rows (`rowBytes` apart, codes after the 4-byte
        /// scale and zero), outputs `dv` apart; unpacked once for all heads. Not inlined on
        /// purpose (as the key kernel).
        @inline(never)
        func valueGroupAccumulateB\(bits)H\(heads)(_ scaled: UnsafePointer<Float>, tokens: Int, _ rows: UnsafeRawPointer, rowBytes: Int,
                                          _ bias: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, dv: Int,
                                          _ tmp: UnsafeMutablePointer<Float>) {

        """
        for sets in passes(bits: bits) {
            s += "    do {\n"
            s += accumulation(over: "t", count: "tokens", row: "rows + (t &* rowBytes &+ 4)", bits: bits, heads: heads, sets: sets)
            for h in 0..<heads {
                s += "        let y\(h) = y + \(h == 0 ? "0" : "dv &* \(h)"), b\(h) = bias[\(h)]\n"
                for (k, set) in sets.enumerated() {
                    let cs = CodeSet(set, bits: bits)
                    s += "        for i in 0..<8 { y\(h)[\(cs.first) &+ i &* \(cs.perByte)] += tmp[\((h * sets.count + k) * 8) &+ i] + b\(h) }\n"
                }
            }
            s += "    }\n"
        }
        return s + "}\n"
    }
}
