import Testing
import KVAlloc

@Suite("Allocation CSV: parsing with positioned errors, writing")
struct AllocationCSVTests {
    @Test("a well-formed file parses; optional columns, CRLF, blank lines and spaces are fine")
    func parses() throws {
        let p = try AllocationCSV.parse("id, lower ,upper,size,alignment,fixed\r\na,0,4,100,64,0\r\n\r\nb,2,6,8,1,\n".replacingOccurrences(of: "1,\n", with: "1,128\n"))
        #expect(p.buffers == [Buffer(id: "a", lower: 0, upper: 4, size: 100, alignment: 64, fixedOffset: 0),
                              Buffer(id: "b", lower: 2, upper: 6, size: 8, alignment: 1, fixedOffset: 128)])
        let q = try AllocationCSV.parse("upper,id,size,lower\n5,x,7,1\n")
        #expect(q.buffers == [Buffer(id: "x", lower: 1, upper: 5, size: 7)])
        // MiniMalloc's benchmark header.
        let m = try AllocationCSV.parse("buffer,start,end,size\n0,3,9,64\n")
        #expect(m.buffers == [Buffer(id: "0", lower: 3, upper: 9, size: 64)])
    }

    @Test("round trip: output lists the placement in input order")
    func writes() throws {
        let p = try AllocationCSV.parse("id,lower,upper,size\nx,0,2,10\ny,1,3,5\n")
        let s = Solution(offsets: [0, 10], buffers: p.buffers)
        #expect(AllocationCSV.write(p, s) == "id,lower,upper,size,offset\nx,0,2,10,0\ny,1,3,5,10\n")
        #expect(try AllocationCSV.parse(AllocationCSV.write(p)).buffers == p.buffers)
    }

    @Test("each kind of bad input is reported at its line and column", arguments: [
        ("", 1, 1, "missing header"),
        ("0,1,2,3\n", 1, 1, "missing header"),
        ("id,lower,upper\na,0,1\n", 1, 1, "missing header column 'size'"),
        ("id,lower,upper,size,colour\n", 1, 21, "unknown column 'colour'"),
        ("id,lower,upper,size\na,0,1,2\na,1,2,3\n", 3, 1, "duplicate id 'a' (first on line 2)"),
        ("id,lower,upper,size\na,4,4,2\n", 2, 5, "upper 4 must be greater than lower 4"),
        ("id,lower,upper,size\na,0,4,-2\n", 2, 7, "size -2 must not be negative"),
        ("id,lower,upper,size\na,-1,4,2\n", 2, 3, "lower -1 must not be negative"),
        ("id,lower,upper,size\na,0,4,2.5\n", 2, 7, "size '2.5' is not an integer"),
        ("id,lower,upper,size\na,0,x,2\n", 2, 5, "upper 'x' is not an integer"),
        ("id,lower,upper,size\na,0,4\n", 2, 1, "expected 4 fields, found 3"),
        ("id,lower,upper,size\n,0,4,1\n", 2, 1, "id is empty"),
        ("id,lower,upper,size,alignment,fixed\na,0,4,1,8,4\n", 2, 11, "fixed offset 4 is not a multiple of the alignment 8"),
    ])
    func errors(text: String, line: Int, column: Int, message: String) {
        #expect {
            _ = try AllocationCSV.parse(text)
        } throws: { error in
            guard let e = error as? CSVError else { return false }
            return e.line == line && e.column == column && e.message.contains(message)
        }
    }
}
