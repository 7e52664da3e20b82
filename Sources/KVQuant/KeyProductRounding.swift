// How decode attention multiplies a query with a full 4-bit key group: in 8-bit integers, the
// query rounded as llama.cpp rounds the activations of its integer dot products.
//
// Rationale. Against a KIVI key group (per channel c: scale s_c, zero z_c, 4-bit codes) a logit
// is Σ_c q_c·(s_c·code_tc + z_c) = Σ_c (q_c·s_c)·code_tc + Σ_c q_c·z_c. With grouped-query
// attention every code byte feeds 8 multiply-adds per KV head, so in f32 the kernel is bound by
// FMAs at about a third of the memory bandwidth (Docs/benchmarks.md). Rounding the scaled query
// q'_c = q_c·s_c to int8 per block of 32 channels (scale a_B = max|q'|/127, round to nearest
// even — ActivationQuantisation's rounding) lets the kernel multiply-add bytes (`vpmaddubsw`,
// 32 products per instruction): logit = Σ_B a_B·Σ_{c∈B} q8_c·code_tc + Σ_c q_c·z_c. The integer
// sums are exact, so the generated kernel and the reference interpreter (which computes exactly
// this) differ only in the order of the f32/Double sums outside them. The rounding adds an error
// of at most a_B/2 per channel and code unit — a 127th of the largest scaled query in the block,
// against the key's own 4-bit step of a 15th of its channel's range — and it shows in the
// end-to-end figures (Docs/kv-budgets.md), not inside a kernel tolerance.
//
// It applies where the integer kernel runs: 4-bit keys, a whole group of 32 tokens, head_dim a
// multiple of 32. Partial groups, 2- and 8-bit keys (8-bit codes × int8 overflow the 16-bit
// pair sums) and fp16 keys multiply in f32 as before.

/// The int8 rounding of the scaled query that 4-bit key groups are multiplied with.
public enum KeyProductRounding {
    /// Channels per rounding block (one f32 scale each).
    public static let blockChannels = ActivationQuantisation.blockElements
    /// Tokens of a key group the integer kernel reads (KIVI's group).
    public static let groupTokens = 32

    /// True when a key group of `tokens` tokens at `bits`, read by heads of `headDim` channels,
    /// is multiplied in 8-bit integers.
    public static func applies(bits: KVBits, tokens: Int, headDim: Int) -> Bool {
        bits == .b4 && tokens == groupTokens && headDim % blockChannels == 0 && headDim > 0
    }

    /// Σ_c q_c·k_tc for every token t of one key group, as the integer kernel computes it (before
    /// the softmax scale): `query` has `scales.count` channels (a multiple of 32); `codes` is
    /// token-major (`tokens × channels`), the key being scales[c]·code + zeros[c].
    public static func logits(query: UnsafePointer<Float>, codes: [UInt8], scales: [Float], zeros: [Float], tokens: Int) -> [Double] {
        let d = scales.count
        precondition(d % blockChannels == 0 && codes.count == tokens * d && zeros.count == d)
        var bias = 0.0
        for c in 0..<d { bias += Double(query[c]) * Double(zeros[c]) }
        let scaled = (0..<d).map { query[$0] * scales[$0] }
        var out = [Double](repeating: bias, count: tokens)
        var b = 0
        while b < d {
            let (a, q8) = ActivationQuantisation.quantise(block: scaled[b..<b + blockChannels])
            for t in 0..<tokens {
                var sum = 0
                for i in 0..<blockChannels { sum += Int(q8[i]) * Int(codes[t * d + b + i]) }
                out[t] += Double(a) * Double(sum)
            }
            b += blockChannels
        }
        return out
    }
}
