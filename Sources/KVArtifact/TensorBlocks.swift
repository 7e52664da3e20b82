// Geometry of tensor parts: which elements of a row-major tensor a `ValuePart` holds, and the
// strided copies that move elements between two blocks of the same tensor.
//
// A part cut along dimension d of a tensor of shape S is the box [outer, end − start, inner] of
// the view [outer, S[d], inner] (outer = Π S[..<d], inner = Π S[d+1...]), stored contiguously. A
// flat part (dim −1) is the element range [start, end). Every block is one of these, so a copy
// between two blocks is either one contiguous run or `outer` runs at fixed strides — what the
// generated code's `block` action and the runtime's weight slicing do.

/// A contiguous run pattern between two blocks of one tensor, in elements.
public struct BlockCopy: Equatable, Sendable {
    /// First element read (in the source block) and written (in the destination block).
    public var source: Int
    public var destination: Int
    /// Elements per run, runs, and the distance between runs' starts on each side.
    public var count: Int
    public var rows: Int
    public var sourceStride: Int
    public var destinationStride: Int
}

extension ValuePart {
    /// The same block, flat when the cut is contiguous in the tensor (Π shape[..<dim] == 1).
    public func canonical(shape: [Int]) -> ValuePart {
        guard dim >= 0, dim < shape.count, shape[..<dim].reduce(1, *) == 1 else { return self }
        let inner = shape[(dim + 1)...].reduce(1, *)
        return ValuePart(dim: -1, start: start * inner, end: end * inner)
    }

    /// The block of a 2-D tensor as a matrix (rows, columns): a range of rows, of columns, or a
    /// flat range of whole rows; nil for a flat range that cuts a row.
    public func matrix(in shape: [Int]) -> (rows: Int, columns: Int)? {
        guard shape.count == 2 else { return nil }
        switch dim {
        case 0: return (end - start, shape[1])
        case 1: return (shape[0], end - start)
        default:
            guard shape[1] > 0, start % shape[1] == 0, end % shape[1] == 0 else { return nil }
            return ((end - start) / shape[1], shape[1])
        }
    }

    /// Elements in the block.
    public func elementCount(shape: [Int]) -> Int {
        guard dim >= 0 else { return end - start }
        return shape[..<dim].reduce(1, *) * (end - start) * shape[(dim + 1)...].reduce(1, *)
    }

    /// The block as (outer, axis length, inner, start) of the view [outer, axis, inner].
    func box(shape: [Int]) -> (outer: Int, axis: Int, inner: Int, start: Int, length: Int) {
        let n = shape.reduce(1, *)
        guard dim >= 0 else { return (1, n, 1, start, end - start) }
        return (shape[..<dim].reduce(1, *), shape[dim], shape[(dim + 1)...].reduce(1, *), start, end - start)
    }

    /// The copies that move the elements `source` holds which `destination` also holds, from a
    /// buffer holding `source` to one holding `destination` (nil: whole tensor). Nil when the two
    /// are cut along different dimensions and neither is the whole tensor (not supported).
    public static func copies(shape: [Int], from source: ValuePart?, into destination: ValuePart?) -> [BlockCopy]? {
        let n = shape.reduce(1, *)
        let whole = ValuePart(dim: -1, start: 0, end: n)
        let s = (source ?? whole).canonical(shape: shape), d = (destination ?? whole).canonical(shape: shape)
        if s.dim == d.dim {
            let lo = max(s.start, d.start), hi = min(s.end, d.end)
            guard lo < hi else { return [] }
            let b = s.box(shape: shape)
            if s.dim < 0 { return [BlockCopy(source: lo - s.start, destination: lo - d.start, count: hi - lo, rows: 1, sourceStride: 0, destinationStride: 0)] }
            return [BlockCopy(source: (lo - s.start) * b.inner, destination: (lo - d.start) * b.inner, count: (hi - lo) * b.inner,
                              rows: b.outer, sourceStride: (s.end - s.start) * b.inner, destinationStride: (d.end - d.start) * b.inner)]
        }
        // One side whole (flat [0, n)), the other cut along a dimension.
        if d.dim < 0 && d.start == 0 && d.end == n {
            let b = s.box(shape: shape)
            return [BlockCopy(source: 0, destination: b.start * b.inner, count: b.length * b.inner, rows: b.outer,
                              sourceStride: b.length * b.inner, destinationStride: b.axis * b.inner)]
        }
        if s.dim < 0 && s.start == 0 && s.end == n {
            let b = d.box(shape: shape)
            return [BlockCopy(source: b.start * b.inner, destination: 0, count: b.length * b.inner, rows: b.outer,
                              sourceStride: b.axis * b.inner, destinationStride: b.length * b.inner)]
        }
        return nil
    }

    /// The block's elements taken from the whole tensor's.
    public func extract<T>(from whole: [T], shape: [Int]) -> [T] {
        var out: [T] = []
        out.reserveCapacity(elementCount(shape: shape))
        for c in ValuePart.copies(shape: shape, from: nil, into: self) ?? [] {
            for r in 0..<c.rows {
                let at = c.source + r * c.sourceStride
                out.append(contentsOf: whole[at..<at + c.count])
            }
        }
        return out
    }

    /// Writes the block's elements into the whole tensor's.
    public func insert<T>(_ part: [T], into whole: inout [T], shape: [Int]) {
        for c in ValuePart.copies(shape: shape, from: self, into: nil) ?? [] {
            for r in 0..<c.rows {
                let from = c.source + r * c.sourceStride, to = c.destination + r * c.destinationStride
                whole.replaceSubrange(to..<to + c.count, with: part[from..<from + c.count])
            }
        }
    }
}
