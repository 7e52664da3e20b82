import Dispatch
import Foundation
#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

// The copy bandwidth the benches measure kernels against: the faster of glibc's memcpy and a
// streaming copy (16-byte loads, non-temporal stores), both over the same two buffers.
//
// Rationale. memcpy alone understated this machine kind's copy bandwidth: on the host of
// 2026-12-07 memcpy of 40 MiB read 10–15 GB/s on one core, while the same copy with non-temporal
// stores read 18–21 (34–41 on two cores against memcpy's 15–31, which moved from run to run).
// A ratio against the slower copy flatters the kernel, so every ratio is taken against the faster
// of the two, and both are reported. Where the bytes fit in the caches memcpy is the faster one
// (non-temporal stores go to memory), so the cache-resident rows keep memcpy's figure.

/// Two buffers of `bytes` and two ways to copy one into the other, each split in `threads`
/// contiguous parts copied at once.
final class Copier: @unchecked Sendable {
    let bytes: Int, threads: Int
    let source: UnsafeMutableRawPointer, target: UnsafeMutableRawPointer

    init(_ bytes: Int, threads: Int) {
        (self.bytes, self.threads) = (bytes, threads)
        source = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        target = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        memset(source, 1, bytes)
        memset(target, 2, bytes)
    }

    deinit {
        source.deallocate()
        target.deallocate()
    }

    /// memcpy looked up at run time, so the optimiser cannot drop copies nobody reads.
    static let opaqueMemcpy: @convention(c) (UnsafeMutableRawPointer?, UnsafeRawPointer?, Int) -> UnsafeMutableRawPointer? =
        unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "memcpy")!, to: (@convention(c) (UnsafeMutableRawPointer?, UnsafeRawPointer?, Int) -> UnsafeMutableRawPointer?).self)

    /// One copy of the whole buffer with memcpy.
    func copy() {
        parts { lo, hi in _ = Self.opaqueMemcpy(self.target + lo, self.source + lo, hi - lo) }
    }

    /// One copy of the whole buffer with non-temporal stores (memcpy where there are none).
    func streamingCopy() {
        parts { lo, hi in Self.stream(self.target + lo, self.source + lo, hi - lo) }
    }

    /// `body(lo, hi)` over `threads` contiguous parts at once, their bounds multiples of 64 bytes.
    private func parts(_ body: @escaping @Sendable (Int, Int) -> Void) {
        if threads <= 1 { return body(0, bytes) }
        let bytes = self.bytes, threads = self.threads
        DispatchQueue.concurrentPerform(iterations: threads) { p in
            let lo = p == 0 ? 0 : bytes * p / threads & ~63, hi = p == threads - 1 ? bytes : bytes * (p + 1) / threads & ~63
            body(lo, hi)
        }
    }

    /// Copies `n` bytes from `s` to `d` (both 16-byte aligned) in 64-byte steps of 16-byte loads
    /// and non-temporal stores, the rest with memcpy.
    @inline(never)
    static func stream(_ d: UnsafeMutableRawPointer, _ s: UnsafeRawPointer, _ n: Int) {
        var i = 0
        #if arch(x86_64)
        while i &+ 64 <= n {
            for o in stride(from: 0, to: 64, by: 16) {
                _mm_stream_si128((d + (i &+ o)).assumingMemoryBound(to: __m128i.self), _mm_load_si128((s + (i &+ o)).assumingMemoryBound(to: __m128i.self)))
            }
            i &+= 64
        }
        #endif
        if i < n { _ = opaqueMemcpy(d + i, s + i, n - i) }
    }
}

extension KernelBench {
    /// The copy bandwidth's figures for one kernel's bytes: seconds per copy of memcpy and of the
    /// streaming copy, and the faster of the two (what ratios are taken against).
    struct CopyTimes {
        var memcpy: Double, streaming: Double
        var best: Double { min(memcpy, streaming) }
    }
}
