// The AVX-512 q4_0 row products: `dotQ4Pair` (two weight rows) and `dotQ4Rows8` (eight) against
// one quantised activation row, two 32-value blocks per 512-bit step; `dotQ4` (one row, for
// weights streamed from DRAM) uses the same block-pair helpers.
//
// Rationale. The AVX2 pair product (`dotPair`) spends more instructions on each block's fp16
// scale than on its 32 products: LLVM scalarises the four-scale integer conversion into
// shifts, masks and `vmulss` per block (≈9 of ≈19 instructions per block and row; the q4_0
// GEMV ran at 16 GB/s in L2 and was 40% of tiny-llama's decode step). Here a block pair's 36
// bytes (d₀, 16 nibble bytes, d₁, 16 nibble bytes — all on 16-bit boundaries) come in with one
// load (a plain 64-byte one where the row has room, a masked one, which cannot fault past the
// row, at its end: masked loads of uncached lines are slow), and two `vpermw` pick out of it
// - the nibble bytes as [block 0 low | block 1 low | block 0 high | block 1 high] (the upper half
//   shifted right by 4 under a mask, then ANDed with 15), and
// - the two scales as [d₀ ×4, d₁ ×4, d₀ ×4, d₁ ×4], converted by one `vcvtph2ps`.
// The activation codes and the 8·Σx offsets are moved into the same quarter order by one
// `vpermq` each, shared by both rows; one `vpdpbusd` (or `vpmaddubsw` + `vpmaddwd`) makes the
// block pair's 16 lane sums. About 12 instructions per block pair and row instead of ≈38.
//
// Bit-identity with the AVX2 path. Lanes 0–3 and 8–11 of a row's accumulator are the AVX2
// path's even-block accumulator (a0), lanes 4–7 and 12–15 its odd-block one (a1): every lane
// sees the same integer sum, the same scale d_w·d_x (fp16 → f32 is exact either way) and the
// same FMAs in the same order, and the final sum regroups the lanes into a0 and a1 before
// `(a0 + a1).sum()`. A last odd block updates only the a0 lanes (a masked FMA), as AVX2 does.
//
// Eight rows at a time. At tiny-llama's 256 columns a row is 4 block-pair steps, and the row's
// final sum — seven dependent adds in order (Swift's `sum()`) plus the lane extractions — cost
// about as much as the steps. `dotQ4Rows8` transposes the eight rows' lane sums (six
// `vpermt2ps` stages) so that the same seven adds, in the same order, run on all eight rows at
// once; it also loads and reorders the activation block pair once for eight rows. The q4_0 GEMV
// in L2 went from 16 to 26–27 GB/s, tiny-llama's q4_0 decode from 0.24 to 0.19 ms/token.

extension SwiftEmitter {
    /// The AVX-512 q4_0 row products (`dotQ4Pair`, `dotQ4Rows8` and the block-pair helpers they
    /// share), for the file's `#if KVPLAN_AVX512` branch.
    static let q4RowsAVX512 = """
    /// An activation block pair (b, b + 1) as q4_0 block-pair products read it: codes and the
    /// negated 8·Σx offsets in quarter order [block 0 low | block 1 low | block 0 high | block 1
    /// high] (16-byte quarters) and the activation scales as [s₀ ×4, s₁ ×4, s₀ ×4, s₁ ×4]; only
    /// block b when `whole` is false (the rest zero). The offsets come negated so that each row's
    /// multiply-add starts from them instead of subtracting them after (one instruction fewer per
    /// row and block pair; the same Int32 sums). With VNNI the high-nibble quarters (lanes 8–15)
    /// are read 16× (q4PairProducts), so their offsets come 16× and their scales ÷16.
    @inline(__always)
    func q4PairActivations(_ q: QuantisedRow, _ b: Int, whole: Bool) -> (x: __m512i, o: __m512i, sx: __m512) {
        let quarters = unsafeBitCast(SIMD8<Int64>(0, 1, 4, 5, 2, 3, 6, 7), to: __m512i.self)
        let scaleLanes = unsafeBitCast(SIMD16<Int32>(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1), to: __m512i.self)
        let x = whole ? _mm512_loadu_si512(q.codes + b &* 32) : _mm512_maskz_loadu_epi8(0xFFFF_FFFF, q.codes + b &* 32)
        let o = whole ? _mm512_loadu_si512(q.offsets + b &* 8) : _mm512_maskz_loadu_epi32(0xFF, q.offsets + b &* 8)
        var negated = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_permutexvar_epi64(quarters, o))
        var sx = _mm512_permutexvar_ps(scaleLanes, _mm512_maskz_loadu_ps(whole ? 0b11 : 0b1, q.scales + b))
    #if KVPLAN_AVX512VNNI
        negated = _mm512_mask_slli_epi32(negated, 0xFF00, negated, 4)
        sx = _mm512_mask_mul_ps(sx, 0xFF00, sx, _mm512_set1_ps(0.0625))
    #endif
        return (_mm512_permutexvar_epi64(quarters, x), negated, sx)
    }

    /// One weight row's block pair at `r` (only its first block when `whole` is false) against
    /// `a`: (d_w·d_x, Σ nibble·x − 8·Σx) per lane, lanes in `a`'s quarter order. `roomy`: the row
    /// has at least 64 bytes from `r` (two more blocks), so the pair is read with a plain 64-byte
    /// load; otherwise with a masked one, which cannot fault past the row's end. Masked loads of
    /// lines not in cache were 3× slower here (q4_0 GEMV from DRAM: 5.3 against 23 GB/s).
    @inline(__always)
    func q4PairProducts(_ r: UnsafeRawPointer, whole: Bool, roomy: Bool, _ a: (x: __m512i, o: __m512i, sx: __m512)) -> (__m512, __m512) {
        // Words of a block pair: 0 = d₀, 1…8 = block 0's nibble bytes, 9 = d₁, 10…17 = block 1's.
        let nibbleWords = unsafeBitCast(SIMD32<UInt16>(1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17,
                                                       1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17), to: __m512i.self)
        let scaleWords = unsafeBitCast(SIMD32<UInt16>(0, 0, 0, 0, 9, 9, 9, 9, 0, 0, 0, 0, 9, 9, 9, 9,
                                                      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), to: __m512i.self)
        let raw = roomy ? _mm512_loadu_si512(r) : _mm512_maskz_loadu_epi16(whole ? 0x3_FFFF : 0x1FF, r)
        let pair = _mm512_permutexvar_epi16(nibbleWords, raw)
    #if KVPLAN_AVX512VNNI
        // The high nibbles stay in place, read as 16·nibble (one AND, no shift): vpdpbusd's Int32
        // sums take 16·15·127·4 easily, and the ×16 is undone exactly by the ÷16 in `a`'s scales
        // (powers of two: the same products as the shifted nibbles').
        let inPlace = unsafeBitCast(SIMD8<UInt64>(0x0F0F_0F0F_0F0F_0F0F, 0x0F0F_0F0F_0F0F_0F0F, 0x0F0F_0F0F_0F0F_0F0F, 0x0F0F_0F0F_0F0F_0F0F,
                                                  0xF0F0_F0F0_F0F0_F0F0, 0xF0F0_F0F0_F0F0_F0F0, 0xF0F0_F0F0_F0F0_F0F0, 0xF0F0_F0F0_F0F0_F0F0), to: __m512i.self)
        let sums = _mm512_dpbusd_epi32(a.o, _mm512_and_si512(pair, inPlace), a.x)
    #else
        // vpmaddubsw's Int16 pair sums would saturate at 16·nibble: shifted down.
        let nibbles = _mm512_and_si512(_mm512_mask_srli_epi16(pair, 0xFFFF_0000, pair, 4), _mm512_set1_epi8(15))
        let sums = _mm512_add_epi32(a.o, _mm512_madd_epi16(_mm512_maddubs_epi16(nibbles, a.x), _mm512_set1_epi16(1)))
    #endif
        let d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(scaleWords, raw)))
        return (_mm512_mul_ps(d, a.sx), _mm512_cvtepi32_ps(sums))
    }

    /// An accumulator of block pairs, lanes [even 0–3, odd 0–3, even 4–7, odd 4–7], as the AVX2
    /// path's two 8-lane accumulators: (even-block lanes, odd-block lanes).
    @inline(__always)
    func q4PairLanes(_ v: __m512) -> (SIMD8<Float>, SIMD8<Float>) {
        let halves = unsafeBitCast(SIMD16<Int32>(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15), to: __m512i.self)
        let s = unsafeBitCast(_mm512_permutexvar_ps(halves, v), to: SIMD16<Float>.self)
        return (s.lowHalf, s.highHalf)
    }

    /// Two q4_0 rows `rowBytes` apart: x·row for both, two blocks per 512-bit step (Q4PairKernel).
    @inline(never)
    func dotQ4Pair(_ q: QuantisedRow, _ w: UnsafeRawPointer, rowBytes: Int, _ n: Int) -> (Float, Float) {
    \(q4RowsLoop(rows: 2))
        // Each row's lanes as the AVX2 path's a0, a1, summed as it sums them.
        let (a0, a1) = q4PairLanes(acc0), (b0, b1) = q4PairLanes(acc1)
        return ((a0 + a1).sum(), (b0 + b1).sum())
    }

    /// Eight q4_0 rows `rowBytes` apart: x·row for each into y[0..<8], the eight sums finished
    /// together (Q4PairKernel).
    @inline(never)
    func dotQ4Rows8(_ q: QuantisedRow, _ w: UnsafeRawPointer, rowBytes: Int, _ n: Int, _ y: UnsafeMutablePointer<Float>) {
    \(q4RowsLoop(rows: 8))
        // Row r's sum is the AVX2 path's (a0 + a1).sum(): a0[i] + a1[i] for i = 0…7 (s_r[i]),
        // then added in order from s_r[0]. The eight rows' s vectors are transposed so that
        // vector c_i holds s_r[i] for r = 0…7, and c_0 + c_1 + … + c_7 sums all rows at once.
        @inline(__always) func lanes(_ v: SIMD16<Int32>) -> __m512i { unsafeBitCast(v, to: __m512i.self) }
        // Rows u, v → [s_u[0…3], s_v[0…3], s_u[4…7], s_v[4…7]].
        @inline(__always) func sums(_ u: __m512, _ v: __m512) -> __m512 {
            _mm512_add_ps(_mm512_permutex2var_ps(u, lanes(SIMD16(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27)), v),
                          _mm512_permutex2var_ps(u, lanes(SIMD16(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31)), v))
        }
        let c01 = sums(acc0, acc1), c23 = sums(acc2, acc3), c45 = sums(acc4, acc5), c67 = sums(acc6, acc7)
        // Four rows → [s_r[i] at 4r + i] for i = 0…3 (low) and i = 4…7 (high).
        let low = lanes(SIMD16(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23))
        let high = lanes(SIMD16(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
        let e0 = _mm512_permutex2var_ps(c01, low, c23), e1 = _mm512_permutex2var_ps(c01, high, c23)
        let f0 = _mm512_permutex2var_ps(c45, low, c67), f1 = _mm512_permutex2var_ps(c45, high, c67)
        // [c_i | c_i+1] for the rows 0–3 in e and 4–7 in f.
        let even = lanes(SIMD16(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29))
        let odd = lanes(SIMD16(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31))
        @inline(__always) func columns(_ v: __m512) -> (SIMD8<Float>, SIMD8<Float>) {
            let s = unsafeBitCast(v, to: SIMD16<Float>.self)
            return (s.lowHalf, s.highHalf)
        }
        let (c0, c1) = columns(_mm512_permutex2var_ps(e0, even, f0)), (c2, c3) = columns(_mm512_permutex2var_ps(e0, odd, f0))
        let (c4, c5) = columns(_mm512_permutex2var_ps(e1, even, f1)), (c6, c7) = columns(_mm512_permutex2var_ps(e1, odd, f1))
        UnsafeMutableRawPointer(y).storeBytes(of: c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7, as: SIMD8<Float>.self)
    }
    """

    /// The block-pair loop of `rows` q4_0 rows `rowBytes` apart (accumulators acc0…acc{rows − 1}),
    /// indented for a function body.
    static func q4RowsLoop(rows: Int) -> String {
        func step(whole: Bool, _ fma: (Int) -> String) -> String {
            (0..<rows).map { r in
                let row = r == 0 ? "p" : r == 1 ? "p + rowBytes" : "p + rowBytes &* \(r)"
                return "        let (d\(r), v\(r)) = q4PairProducts(\(row), whole: \(whole), roomy: \(whole ? "roomy" : "false"), x)\n        acc\(r) = \(fma(r))\n"
            }.joined()
        }
        return "    var " + (0..<rows).map { "acc\($0) = _mm512_setzero_ps()" }.joined(separator: ", ") + "\n"
            + "    let blocks = n &>> 5\n    var b = 0, p = w\n"
            + "    while b &+ 2 <= blocks {\n        let x = q4PairActivations(q, b, whole: true), roomy = b &+ 4 <= blocks\n"
            + step(whole: true) { "_mm512_fmadd_ps(d\($0), v\($0), acc\($0))" }
            + "        b &+= 2; p += 36\n    }\n"
            + "    if b < blocks {\n        // A last odd block: only the even-block lanes (the AVX2 path's a0) take it.\n"
            + "        let x = q4PairActivations(q, b, whole: false)\n"
            + step(whole: false) { "_mm512_mask3_fmadd_ps(d\($0), v\($0), acc\($0), 0x0F0F)" }
            + "    }"
    }
}
