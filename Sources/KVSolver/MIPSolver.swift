// MIPSolver: solves a `LinearModel` with GLPK's branch-and-cut (glp_intopt).
//
// Why this shape: GLPK keeps global, per-thread state and aborts the process
// on malformed input, so the Swift model is validated while it is built
// (`LinearModel.add*` throws) and every GLPK call happens inside one
// process-wide lock, in one function that creates, solves, reads and frees
// the problem. With presolve off (the default here) the LP relaxation is
// solved first by the simplex method, which also tells infeasible and
// unbounded relaxations apart; warm starts are handed to GLPK in the
// branch-and-cut callback (reason GLP_IHEUR) after being checked for
// feasibility in Swift, since `glp_ios_heur_sol` does not check them.

import CGLPK
import Foundation
import Synchronization

/// Options for one MIP solve.
public struct SolveOptions: Sendable {
    /// Wall-clock limit in seconds; nil for none.
    public var timeLimit: Double?
    /// Stop when the relative gap |best − bound| / (|best| + ε) falls to this value (0 = prove optimality).
    public var relativeGap: Double
    /// Use GLPK's MIP presolver (then the LP relaxation is not solved separately).
    public var presolve: Bool
    /// Let GLPK add Gomory, MIR, cover and clique cuts.
    public var cuts: Bool
    /// A complete integer-feasible assignment handed to the solver as its first incumbent.
    public var warmStart: [Double]?
    /// Called from the search with the progress so far; return false to stop.
    public var progress: (@Sendable (SolveProgress) -> Bool)?

    /// Defaults: no limit, gap 0, no presolve, cuts on, no warm start.
    public init(timeLimit: Double? = nil, relativeGap: Double = 0, presolve: Bool = false,
                cuts: Bool = true, warmStart: [Double]? = nil,
                progress: (@Sendable (SolveProgress) -> Bool)? = nil) {
        self.timeLimit = timeLimit
        self.relativeGap = relativeGap
        self.presolve = presolve
        self.cuts = cuts
        self.warmStart = warmStart
        self.progress = progress
    }
}

/// A snapshot of the branch-and-cut search.
public struct SolveProgress: Sendable {
    /// Seconds since the solve began.
    public var elapsed: Double
    /// Objective of the best integer solution so far, if any.
    public var incumbent: Double?
    /// Best bound over the open nodes, if known.
    public var bound: Double?
    /// Relative gap between incumbent and bound, if both are known.
    public var gap: Double?
}

/// Outcome of a solve.
public enum SolveStatus: Sendable, Equatable, CustomStringConvertible {
    /// Proven optimal (within the requested gap, which is 0 by default).
    case optimal
    /// An integer solution was found, but the search stopped (time limit, gap target or callback) before proving it optimal.
    case feasible
    /// The model has no integer-feasible solution (proven).
    case infeasible
    /// The objective is unbounded.
    case unbounded
    /// The search stopped before any integer solution was found.
    case noSolutionFound
    /// GLPK reported a numerical failure.
    case failed(String)

    public var description: String {
        switch self {
        case .optimal: return "optimal"
        case .feasible: return "feasible (not proven optimal)"
        case .infeasible: return "infeasible"
        case .unbounded: return "unbounded"
        case .noSolutionFound: return "no solution found"
        case let .failed(why): return "failed: \(why)"
        }
    }
}

/// The result of a solve: status, objective, values and the proven bound.
public struct MIPResult: Sendable {
    /// What the solver established.
    public var status: SolveStatus
    /// Objective value of the returned solution (nil when there is none).
    public var objective: Double?
    /// One value per variable, in creation order (empty when there is none).
    public var values: [Double]
    /// Best proven bound on the optimum (equal to `objective` when optimal).
    public var bound: Double?
    /// Seconds spent in GLPK.
    public var seconds: Double
    /// True when the warm start was accepted as an incumbent.
    public var warmStartUsed: Bool

    /// Relative gap of the returned solution, 0 when optimal.
    public var gap: Double? {
        guard let o = objective, let b = bound else { return nil }
        return abs(o - b) / (abs(o) + 1e-10)
    }

    /// The value of a variable in the returned solution.
    public subscript(_ v: Variable) -> Double { values[v.index] }
}

/// Errors of the solver interface itself (not of the model's feasibility).
public enum SolverError: Error, Equatable, CustomStringConvertible {
    /// The warm start has the wrong length or violates the model.
    case invalidWarmStart(String)
    /// An option out of range.
    case invalidOption(String)

    public var description: String {
        switch self {
        case let .invalidWarmStart(s): return "invalid warm start: \(s)"
        case let .invalidOption(s): return "invalid solver option: \(s)"
        }
    }
}

/// Solves MIPs with GLPK.
public enum MIPSolver {
    /// GLPK's environment is global; all use goes through this lock.
    private static let glpkLock = Mutex(())

    /// The GLPK version string of the linked library.
    public static var glpkVersion: String {
        glpkLock.withLock { _ in String(cString: glp_version()) }
    }

    /// Solves `model` under `options`.
    public static func solve(_ model: LinearModel, options: SolveOptions = SolveOptions()) throws -> MIPResult {
        if let t = options.timeLimit, !(t >= 0) || !t.isFinite {
            throw SolverError.invalidOption("time limit must be a non-negative number of seconds, got \(t)")
        }
        guard options.relativeGap >= 0, options.relativeGap.isFinite else {
            throw SolverError.invalidOption("relative gap must be ≥ 0, got \(options.relativeGap)")
        }
        if let w = options.warmStart {
            guard w.count == model.variableCount else {
                throw SolverError.invalidWarmStart("\(w.count) values for \(model.variableCount) variables")
            }
            guard model.isFeasible(w) else {
                throw SolverError.invalidWarmStart("the assignment violates a bound, an integrality or a row")
            }
        }
        return glpkLock.withLock { _ in solveLocked(model, options) }
    }

    private static func solveLocked(_ model: LinearModel, _ options: SolveOptions) -> MIPResult {
        glp_term_out(GLP_OFF)
        let start = Date()
        let lp = glp_create_prob()
        defer { glp_delete_prob(lp) }
        load(model, into: lp)

        let n = model.variableCount
        let isMIP = model.integerCount > 0
        var result = MIPResult(status: .noSolutionFound, objective: nil, values: [], bound: nil,
                               seconds: 0, warmStartUsed: false)
        let limitMS: Int32 = options.timeLimit.map { Int32(clamping: Int(($0 * 1000).rounded(.up))) } ?? Int32.max

        // LP relaxation (needed by glp_intopt without presolve; tells infeasible from unbounded).
        if !options.presolve || !isMIP {
            var smcp = glp_smcp()
            glp_init_smcp(&smcp)
            smcp.msg_lev = GLP_MSG_OFF
            smcp.presolve = GLP_OFF
            smcp.tm_lim = limitMS
            let rc = glp_simplex(lp, &smcp)
            let status = glp_get_status(lp)
            result.seconds = Date().timeIntervalSince(start)
            if rc == GLP_ETMLIM { result.status = .noSolutionFound; return result }
            if rc != 0 && rc != GLP_ENOPFS && rc != GLP_ENODFS {
                result.status = .failed("simplex returned code \(rc)")
                return result
            }
            if status == GLP_NOFEAS || rc == GLP_ENOPFS { result.status = .infeasible; return result }
            if status == GLP_UNBND { result.status = .unbounded; return result }
            if status == GLP_INFEAS {
                // Primal infeasible, or dual infeasible with an infeasible primal: report infeasible.
                result.status = .infeasible
                return result
            }
            if status != GLP_OPT {
                if glp_get_dual_stat(lp) == GLP_NOFEAS { result.status = .unbounded; return result }
                result.status = .failed("LP relaxation ended with status \(status)")
                return result
            }
            if !isMIP {
                result.status = .optimal
                result.objective = glp_get_obj_val(lp) + model.objectiveConstant
                result.bound = result.objective
                result.values = (0..<n).map { glp_get_col_prim(lp, Int32($0 + 1)) }
                return result
            }
        }

        let context = CallbackContext(options: options, start: start, constant: model.objectiveConstant)
        let unmanaged = Unmanaged.passRetained(context)
        defer { unmanaged.release() }
        var iocp = glp_iocp()
        glp_init_iocp(&iocp)
        iocp.msg_lev = GLP_MSG_OFF
        iocp.presolve = options.presolve ? GLP_ON : GLP_OFF
        iocp.tm_lim = limitMS
        iocp.mip_gap = options.relativeGap
        if options.cuts {
            iocp.gmi_cuts = GLP_ON
            iocp.mir_cuts = GLP_ON
            iocp.cov_cuts = GLP_ON
            iocp.clq_cuts = GLP_ON
        }
        iocp.cb_info = unmanaged.toOpaque()
        iocp.cb_func = { tree, info in
            guard let tree, let info else { return }
            let ctx = Unmanaged<CallbackContext>.fromOpaque(info).takeUnretainedValue()
            ctx.handle(tree)
        }
        let rc = glp_intopt(lp, &iocp)
        result.seconds = Date().timeIntervalSince(start)
        result.warmStartUsed = context.warmStartAccepted
        let mipStatus = glp_mip_status(lp)
        switch mipStatus {
        case GLP_OPT:
            result.status = (rc == 0) ? .optimal : .feasible
        case GLP_FEAS:
            result.status = .feasible
        case GLP_NOFEAS:
            result.status = .infeasible
        default:
            if rc == GLP_ENOPFS { result.status = .infeasible }
            else if rc == GLP_ENODFS { result.status = .unbounded }
            else if rc == 0 || rc == GLP_ETMLIM || rc == GLP_ESTOP || rc == GLP_EMIPGAP { result.status = .noSolutionFound }
            else { result.status = .failed("glp_intopt returned code \(rc)") }
        }
        if result.status == .optimal || result.status == .feasible {
            result.values = (0..<n).map { glp_mip_col_val(lp, Int32($0 + 1)) }
            for j in 0..<n where model.columns[j].kind != .continuous {
                result.values[j] = result.values[j].rounded()
            }
            result.objective = model.objectiveValue(at: result.values)
            if result.status == .optimal && rc == 0 && options.relativeGap == 0 {
                result.bound = result.objective
            } else {
                result.bound = context.bestBound.map { $0 + model.objectiveConstant }
                if rc == 0, result.bound == nil { result.bound = result.objective }
            }
        }
        return result
    }

    private static func load(_ model: LinearModel, into lp: OpaquePointer?) {
        glp_set_prob_name(lp, model.name)
        glp_set_obj_dir(lp, model.sense == .minimize ? GLP_MIN : GLP_MAX)
        // The objective constant stays in Swift (added to every value read back).
        if model.variableCount > 0 { glp_add_cols(lp, Int32(model.variableCount)) }
        for (j, c) in model.columns.enumerated() {
            let col = Int32(j + 1)
            glp_set_col_name(lp, col, c.name)
            // Kind before bounds: GLP_BV resets a column's bounds to [0, 1], which would free a binary fixed at 0 or 1.
            // Binaries go in as integers within their (already clamped) bounds.
            glp_set_col_kind(lp, col, c.kind == .continuous ? GLP_CV : GLP_IV)
            glp_set_col_bnds(lp, col, boundType(c.lower, c.upper), c.lower.isFinite ? c.lower : 0,
                             c.upper.isFinite ? c.upper : 0)
            glp_set_obj_coef(lp, col, c.objective)
        }
        if model.constraintCount > 0 { glp_add_rows(lp, Int32(model.constraintCount)) }
        for (i, r) in model.rows.enumerated() {
            let row = Int32(i + 1)
            glp_set_row_name(lp, row, r.name)
            switch r.sense {
            case .lessOrEqual: glp_set_row_bnds(lp, row, GLP_UP, 0, r.rhs)
            case .greaterOrEqual: glp_set_row_bnds(lp, row, GLP_LO, r.rhs, 0)
            case .equal: glp_set_row_bnds(lp, row, GLP_FX, r.rhs, r.rhs)
            }
            // GLPK arrays are 1-based: element 0 is ignored.
            let ind: [Int32] = [0] + r.indices.map { Int32($0 + 1) }
            let val: [Double] = [0] + r.coefficients
            glp_set_mat_row(lp, row, Int32(r.indices.count), ind, val)
        }
    }

    private static func boundType(_ lower: Double, _ upper: Double) -> Int32 {
        switch (lower.isFinite, upper.isFinite) {
        case (false, false): return GLP_FR
        case (true, false): return GLP_LO
        case (false, true): return GLP_UP
        case (true, true): return lower == upper ? GLP_FX : GLP_DB
        }
    }
}

/// State shared with GLPK's branch-and-cut callback.
private final class CallbackContext: @unchecked Sendable {
    let options: SolveOptions
    let start: Date
    let constant: Double
    var warmStartOffered = false
    var warmStartAccepted = false
    var bestBound: Double?

    init(options: SolveOptions, start: Date, constant: Double) {
        self.options = options
        self.start = start
        self.constant = constant
    }

    func handle(_ tree: OpaquePointer) {
        let reason = glp_ios_reason(tree)
        let node = glp_ios_best_node(tree)
        if node != 0 { bestBound = glp_ios_node_bound(tree, node) }
        if reason == GLP_IHEUR, !warmStartOffered, let w = options.warmStart {
            warmStartOffered = true
            let x = [0.0] + w
            warmStartAccepted = x.withUnsafeBufferPointer { glp_ios_heur_sol(tree, $0.baseAddress) } == 0
        }
        if let progress = options.progress, reason == GLP_ISELECT || reason == GLP_IBINGO {
            let lp = glp_ios_get_prob(tree)
            let hasIncumbent = glp_mip_status(lp) == GLP_FEAS || glp_mip_status(lp) == GLP_OPT
            let incumbent = hasIncumbent ? glp_mip_obj_val(lp) + constant : nil
            let gap = hasIncumbent ? glp_ios_mip_gap(tree) : nil
            let snapshot = SolveProgress(elapsed: Date().timeIntervalSince(start), incumbent: incumbent,
                                         bound: bestBound.map { $0 + constant }, gap: gap)
            if !progress(snapshot) { glp_ios_terminate(tree) }
        }
    }
}
