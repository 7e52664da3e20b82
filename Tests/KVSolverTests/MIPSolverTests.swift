import Testing
@testable import KVSolver

@Suite("MIPSolver: small MIPs with known optima")
struct MIPSolverTests {
    @Test("0/1 knapsack: optimum 20 by taking items b and c")
    func knapsack() throws {
        var m = LinearModel(name: "knapsack")
        let a = try m.addVariable("a", kind: .binary)
        let b = try m.addVariable("b", kind: .binary)
        let c = try m.addVariable("c", kind: .binary)
        try m.add(4.0 * a + 6.0 * b + 3.0 * c <= 9)
        try m.setObjective(.maximize, 10.0 * a + 13.0 * b + 7.0 * c)
        let r = try MIPSolver.solve(m)
        #expect(r.status == .optimal)
        #expect(r.objective == 20)
        #expect([r[a], r[b], r[c]] == [0, 1, 1])
        #expect(r.gap == 0)
    }

    @Test("integrality closes the LP gap: LP optimum 1.5, MIP optimum 2")
    func integerRounding() throws {
        var m = LinearModel()
        let x = try m.addVariable("x", kind: .integer)
        let y = try m.addVariable("y", kind: .integer)
        try m.add(2.0 * x + 2.0 * y >= 3)
        try m.setObjective(.minimize, x + y)
        #expect(try MIPSolver.solve(m).objective == 2)

        var lp = LinearModel()
        let u = try lp.addVariable("u")
        let v = try lp.addVariable("v")
        try lp.add(2.0 * u + 2.0 * v >= 3)
        try lp.setObjective(.minimize, u + v)
        let r = try MIPSolver.solve(lp)
        #expect(r.status == .optimal)
        #expect(abs(r.objective! - 1.5) < 1e-9)
    }

    @Test("pure LP: max 3x + 2y over a polygon is 11 at (3, 1)")
    func linearProgram() throws {
        var m = LinearModel()
        let x = try m.addVariable("x", upper: 3)
        let y = try m.addVariable("y")
        try m.add(x + y <= 4)
        try m.add(1.0 * x + 3.0 * y <= 6)
        try m.setObjective(.maximize, 3.0 * x + 2.0 * y)
        let r = try MIPSolver.solve(m)
        #expect(r.status == .optimal)
        #expect(abs(r.objective! - 11) < 1e-9)
        #expect(abs(r[x] - 3) < 1e-9 && abs(r[y] - 1) < 1e-9)
    }

    @Test("objective constants are carried through")
    func objectiveConstant() throws {
        var m = LinearModel()
        let x = try m.addVariable("x", lower: 2, upper: 5, kind: .integer)
        try m.setObjective(.minimize, x + LinearExpression(constant: 100))
        let r = try MIPSolver.solve(m)
        #expect(r.objective == 102)
        #expect(r.bound == 102)
    }

    @Test("infeasible and unbounded models are told apart")
    func infeasibleAndUnbounded() throws {
        var m = LinearModel()
        let x = try m.addVariable("x", kind: .binary)
        try m.add(LinearExpression([(x, 1)]) >= 2)
        try m.setObjective(.minimize, LinearExpression([(x, 1)]))
        #expect(try MIPSolver.solve(m).status == .infeasible)

        var u = LinearModel()
        let y = try u.addVariable("y", kind: .integer)
        try u.setObjective(.maximize, LinearExpression([(y, 1)]))
        #expect(try MIPSolver.solve(u).status == .unbounded)
    }

    @Test("a feasible warm start is accepted and the optimum is still found")
    func warmStart() throws {
        var m = LinearModel()
        let xs = try (0..<12).map { try m.addVariable("x\($0)", kind: .binary) }
        let weights: [Double] = [23, 31, 29, 44, 53, 38, 63, 85, 89, 82, 17, 19]
        let values: [Double] = [92, 57, 49, 68, 60, 43, 67, 84, 87, 72, 21, 25]
        try m.add(LinearExpression(zip(xs, weights).map { ($0, $1) }) <= 165)
        try m.setObjective(.maximize, LinearExpression(zip(xs, values).map { ($0, $1) }))
        let start = [1.0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]  // weight 83, value 198
        let r = try MIPSolver.solve(m, options: SolveOptions(warmStart: start))
        #expect(r.status == .optimal)
        // P01 (optimum 309 over its 10 items) plus two light items; 312 checked by enumerating all 4,096 subsets.
        #expect(r.objective == 312)
        #expect(r.warmStartUsed)
        let cold = try MIPSolver.solve(m)
        #expect(cold.objective == r.objective)
    }

    @Test("an infeasible or mis-sized warm start is rejected before GLPK sees it")
    func badWarmStart() throws {
        var m = LinearModel()
        let x = try m.addVariable("x", kind: .binary)
        try m.add(LinearExpression([(x, 1)]) <= 0)
        #expect(throws: SolverError.self) { try MIPSolver.solve(m, options: SolveOptions(warmStart: [1])) }
        #expect(throws: SolverError.self) { try MIPSolver.solve(m, options: SolveOptions(warmStart: [0, 0])) }
    }

    @Test("invalid bounds and options are errors, not GLPK aborts")
    func invalidInput() throws {
        var m = LinearModel()
        #expect(throws: ModelError.self) { try m.addVariable("x", lower: 3, upper: 1) }
        #expect(throws: ModelError.self) { try m.addVariable("y", objective: .nan) }
        let v = try m.addVariable("z")
        #expect(throws: ModelError.self) { try m.add(LinearExpression([(v, .infinity)]) <= 1) }
        #expect(throws: ModelError.self) { try m.add(LinearExpression([(Variable(index: 7), 1)]) <= 1) }
        #expect(throws: SolverError.self) { try MIPSolver.solve(m, options: SolveOptions(timeLimit: -1)) }
        #expect(throws: SolverError.self) { try MIPSolver.solve(m, options: SolveOptions(relativeGap: -0.1)) }
    }

    @Test("a progress callback that asks to stop ends the search with a verifiable answer")
    func stopFromCallback() throws {
        // Many symmetric binaries: a search with a lot of nodes.
        var m = LinearModel()
        let n = 30
        let xs = try (0..<n).map { try m.addVariable("x\($0)", kind: .binary) }
        // 2·Σx = 31 has LP solutions but no integer one: branch and bound must search.
        try m.add(LinearExpression(xs.map { ($0, 2.0) }) == Double(n + 1))
        try m.setObjective(.minimize, LinearExpression(xs.map { ($0, 1.0) }))
        let r = try MIPSolver.solve(m, options: SolveOptions(cuts: false, progress: { _ in false }))
        #expect([SolveStatus.infeasible, .noSolutionFound].contains(r.status))
        #expect(r.values.isEmpty)
    }

    @Test("the feasibility check used for warm starts is exact on rows, bounds and integrality")
    func feasibilityCheck() throws {
        var m = LinearModel()
        let x = try m.addVariable("x", upper: 4, kind: .integer)
        let y = try m.addVariable("y")
        try m.add(x + y <= 5)
        #expect(m.isFeasible([4, 1]))
        #expect(!m.isFeasible([4, 1.5]))
        #expect(!m.isFeasible([2.5, 0]))
        #expect(!m.isFeasible([5, 0]))
    }

    @Test("GLPK is linked and reports its version")
    func version() {
        #expect(MIPSolver.glpkVersion.hasPrefix("5."))
    }
}

@Suite("KVSolver: bounds of binaries")
struct BinaryBoundTests {
    /// GLPK's GLP_BV resets a column to [0, 1]; a binary fixed at 1 must stay fixed.
    @Test("a binary fixed at 1 stays 1 even when the objective wants it 0")
    func fixedBinary() throws {
        var m = LinearModel()
        let a = try m.addVariable("a", lower: 1, upper: 1, kind: .binary)
        let b = try m.addVariable("b", kind: .binary)
        try m.add(a + b <= 2)
        try m.setObjective(.minimize, a + b)
        let r = try MIPSolver.solve(m)
        #expect(r.status == .optimal && r[a] == 1 && r[b] == 0 && r.objective == 1)
    }
}
