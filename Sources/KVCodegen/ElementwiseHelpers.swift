// Vectorised building blocks of the row-wise and elementwise kernels (softmax, silu, gelu,
// layernorm statistics), in every Kernels.swift.
//
// Rationale. Written as plain loops calling libm, these kernels ran at 1–6 GB/s — a tenth of copy
// bandwidth or less (`kvplan bench kernels --family rowwise`): exp, tanh and erf are scalar
// library calls, and Double accumulation stops LLVM from vectorising. Here exp is Cephes' expf
// polynomial over SIMD8<Float> (≤ 2 ulp; inputs clamped to [−87, 88]), tanh is derived from it
// (tanh u = 1 − 2 / (e^{2u} + 1)), and erf is Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5·10⁻⁷)
// on top of it. Sums are f32 in four SIMD8 accumulators (32 partial sums): relative error a few
// 10⁻⁷ at the widths of real models, far inside the kernels' documented tolerance
// (10⁻⁴ + 10⁻³·|reference| against the interpreter's Double arithmetic). Tails shorter than a
// vector use the scalar libm functions.

import Foundation

extension SwiftEmitter {
    /// lanesMax, lanesMin and expv over SIMD8<Float>, and the same over SIMD16<Float> (decode
    /// attention's softmax: 512-bit where the CPU has AVX-512, two 256-bit halves otherwise —
    /// the same operations per lane either way).
    static let laneHelpers: String = {
        var wide = laneHelperTemplate.replacingOccurrences(of: "SIMD8<", with: "SIMD16<").replacingOccurrences(of: "#if KVPLAN_AVX2", with: "#if KVPLAN_AVX512")
            .replacingOccurrences(of: "_mm256_", with: "_mm512_").replacingOccurrences(of: "__m256", with: "__m512")
        // Without AVX-512, two 256-bit halves through the 8-lane helpers (vmaxps / vminps).
        for name in ["Max", "Min"] {
            let op = "_mm512_\(name.lowercased())_ps"
            let line = "    return unsafeBitCast(\(op)(unsafeBitCast(a, to: __m512.self), unsafeBitCast(b, to: __m512.self)), to: SIMD16<Float>.self)\n#else\n"
            precondition(wide.contains(line), "laneHelperTemplate changed: no 512-bit lanes\(name)")
            wide = wide.replacingOccurrences(of: line, with: line.dropLast("#else\n".count)
                + "#elseif KVPLAN_AVX2\n    return SIMD16(lowHalf: lanes\(name)(a.lowHalf, b.lowHalf), highHalf: lanes\(name)(a.highHalf, b.highHalf))\n#else\n")
        }
        return laneHelperTemplate + wide
    }()

    // max and min are `vmaxps` / `vminps` where the intrinsics are there (KVPLAN_AVX2, and the
    // 512-bit ones with KVPLAN_AVX512): LLVM turned the portable sign smear into a compare, a
    // masked move and integer masking — four to five µops for one — which made the clamp of
    // expv as dear as its polynomial (the GQA-4 softmax −33% with vmaxps, bit-identical,
    // Docs/benchmarks.md). They differ from the smear only for NaN and for max(+0, −0).
    static let laneHelperTemplate = """
    /// max(a, b) lane by lane: `vmaxps` with AVX2; otherwise by the sign of a − b smeared over the
    /// lane (the standard library's pointwiseMax is called out of line, 128 bits at a time:
    /// measured 4× slower softmax).
    @inline(__always)
    func lanesMax(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
    #if KVPLAN_AVX2
        return unsafeBitCast(_mm256_max_ps(unsafeBitCast(a, to: __m256.self), unsafeBitCast(b, to: __m256.self)), to: SIMD8<Float>.self)
    #else
        let aIsLess = unsafeBitCast(a - b, to: SIMD8<Int32>.self) &>> 31
        return unsafeBitCast((unsafeBitCast(b, to: SIMD8<Int32>.self) & aIsLess) | (unsafeBitCast(a, to: SIMD8<Int32>.self) & ~aIsLess), to: SIMD8<Float>.self)
    #endif
    }

    /// min(a, b) lane by lane (as lanesMax).
    @inline(__always)
    func lanesMin(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
    #if KVPLAN_AVX2
        return unsafeBitCast(_mm256_min_ps(unsafeBitCast(a, to: __m256.self), unsafeBitCast(b, to: __m256.self)), to: SIMD8<Float>.self)
    #else
        let aIsLess = unsafeBitCast(a - b, to: SIMD8<Int32>.self) &>> 31
        return unsafeBitCast((unsafeBitCast(a, to: SIMD8<Int32>.self) & aIsLess) | (unsafeBitCast(b, to: SIMD8<Int32>.self) & ~aIsLess), to: SIMD8<Float>.self)
    #endif
    }

    /// e^x lane by lane (Cephes expf; x clamped to [-87, 88]).
    @inline(__always)
    func expv(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let x = lanesMin(lanesMax(x, SIMD8<Float>(repeating: -87)), SIMD8<Float>(repeating: 88))
        let t = x * 1.44269504 + 12_582_912  // 1.5·2^23: x·log2(e) rounded lands in the low mantissa bits
        let n = t - 12_582_912
        let r = (x - n * 0.693359375) + n * 2.12194440e-4
        var p = SIMD8<Float>(repeating: 1.9875691500e-4)
        p = SIMD8<Float>(repeating: 1.3981999507e-3).addingProduct(p, r)
        p = SIMD8<Float>(repeating: 8.3334519073e-3).addingProduct(p, r)
        p = SIMD8<Float>(repeating: 4.1665795894e-2).addingProduct(p, r)
        p = SIMD8<Float>(repeating: 1.6666665459e-1).addingProduct(p, r)
        p = SIMD8<Float>(repeating: 5.0000001201e-1).addingProduct(p, r)
        let e = (r + 1).addingProduct(p, r * r)
        let exponent = (unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        return e * unsafeBitCast(exponent, to: SIMD8<Float>.self)
    }

    """

    static let elementwiseHelpers = laneHelpers + """
    /// erf lane by lane (Abramowitz & Stegun 7.1.26, |error| ≤ 1.5e-7).
    @inline(__always)
    func erfv(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let a = lanesMin(unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: SIMD8<Float>.self), SIMD8<Float>(repeating: 9))
        let t = 1 / (a * 0.3275911 + 1)
        var p = SIMD8<Float>(repeating: 1.061405429)
        p = SIMD8<Float>(repeating: -1.453152027).addingProduct(p, t)
        p = SIMD8<Float>(repeating: 1.421413741).addingProduct(p, t)
        p = SIMD8<Float>(repeating: -0.284496736).addingProduct(p, t)
        p = SIMD8<Float>(repeating: 0.254829592).addingProduct(p, t)
        let e = 1 - p * t * expv(-(a * a))
        return unsafeBitCast(unsafeBitCast(e, to: SIMD8<UInt32>.self) | (unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x8000_0000), to: SIMD8<Float>.self)
    }

    /// y = softmax(x) over one row of `n` values.
    @inline(never)
    func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        @inline(__always) func xv(_ i: Int) -> SIMD8<Float> { UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) }
        var mv = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i &+ 8 <= n { mv = lanesMax(mv, xv(i)); i &+= 8 }
        var m = mv.max()
        while i < n { m = max(m, x[i]); i &+= 1 }
        let mm = SIMD8<Float>(repeating: m)
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
        i = 0
        while i &+ 16 <= n {
            let e0 = expv(xv(i) - mm), e1 = expv(xv(i &+ 8) - mm)
            UnsafeMutableRawPointer(y + i).storeBytes(of: e0, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(y + (i &+ 8)).storeBytes(of: e1, as: SIMD8<Float>.self)
            s0 += e0
            s1 += e1
            i &+= 16
        }
        var s = (s0 + s1).sum()
        while i < n { y[i] = exp(x[i] - m); s += y[i]; i &+= 1 }
        let inverse = SIMD8<Float>(repeating: 1 / s)
        i = 0
        while i &+ 8 <= n {
            UnsafeMutableRawPointer(y + i).storeBytes(of: UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self) * inverse, as: SIMD8<Float>.self)
            i &+= 8
        }
        while i < n { y[i] *= inverse[0]; i &+= 1 }
    }

    /// y = silu(x) · z (z nil: silu(x)) over `n` values.
    @inline(never)
    func siluMul(_ x: UnsafePointer<Float>, _ z: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i &+ 8 <= n {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            var r = v / (1 + expv(-v))
            if let z { r *= UnsafeRawPointer(z + i).loadUnaligned(as: SIMD8<Float>.self) }
            UnsafeMutableRawPointer(y + i).storeBytes(of: r, as: SIMD8<Float>.self)
            i &+= 8
        }
        while i < n { let v = x[i]; y[i] = v / (1 + exp(-v)) * (z?[i] ?? 1); i &+= 1 }
    }

    /// y = gelu(x) over `n` values: the erf form, or Hugging Face's tanh approximation.
    @inline(never)
    func gelu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, tanhForm: Bool) {
        var i = 0
        while i &+ 8 <= n {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            let inner: SIMD8<Float>
            if tanhForm {
                let u = 0.7978845608 * (v + 0.044715 * v * v * v)
                inner = 1 - 2 / (expv(2 * u) + 1)
            } else {
                inner = erfv(v * 0.7071067812)
            }
            UnsafeMutableRawPointer(y + i).storeBytes(of: 0.5 * v * (1 + inner), as: SIMD8<Float>.self)
            i &+= 8
        }
        while i < n {
            let v = x[i]
            y[i] = tanhForm ? 0.5 * v * (1 + tanh(0.7978845608 * (v + 0.044715 * v * v * v))) : 0.5 * v * (1 + erf(v * 0.7071067812))
            i &+= 1
        }
    }

    /// (mean, 1 / sqrt(variance + eps)) of one row of `n` values, in two passes.
    @inline(never)
    func meanAndScale(_ x: UnsafePointer<Float>, _ n: Int, eps: Float) -> (Float, Float) {
        @inline(__always) func xv(_ i: Int) -> SIMD8<Float> { UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) }
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        var i = 0
        while i &+ 32 <= n { s0 += xv(i); s1 += xv(i &+ 8); s2 += xv(i &+ 16); s3 += xv(i &+ 24); i &+= 32 }
        var s = ((s0 + s1) + (s2 + s3)).sum()
        while i < n { s += x[i]; i &+= 1 }
        let mean = s / Float(n), mv = SIMD8<Float>(repeating: mean)
        s0 = SIMD8<Float>(); s1 = SIMD8<Float>(); s2 = SIMD8<Float>(); s3 = SIMD8<Float>()
        i = 0
        while i &+ 32 <= n {
            let c0 = xv(i) - mv, c1 = xv(i &+ 8) - mv, c2 = xv(i &+ 16) - mv, c3 = xv(i &+ 24) - mv
            s0.addProduct(c0, c0); s1.addProduct(c1, c1); s2.addProduct(c2, c2); s3.addProduct(c3, c3)
            i &+= 32
        }
        var squares = ((s0 + s1) + (s2 + s3)).sum()
        while i < n { let c = x[i] - mean; squares += c * c; i &+= 1 }
        return (mean, 1 / (squares / Float(n) + eps).squareRoot())
    }

    """
}
