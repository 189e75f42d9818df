//! Code generation against the kernel IR's evaluator on hand-built kernels:
//! integer division and remainder of negative values (floored and Euclidean, by
//! constants, powers of two and run-time sizes); vector loops with a tail and
//! unrolled short loops; values that read the loop index, lane by lane.

use seqc_compiler::ir::kernel::eval::{run, Memory};
use seqc_compiler::ir::kernel::{Buffer, CmpOp, Expr, IntOp, Kernel, KernelModule, Launch, LoopKind, Role, Stmt, Var};
use seqc_compiler::ir::{kernel::BufId, ScalarFn};

/// One kernel writing `f(i)` for `i` in `0..n` into buffer 1 (`out`), reading
/// buffer 0 (`x[i] = i`); the loop is marked as the scheduler marks loops.
fn module(n: i64, value: Expr) -> KernelModule {
    let mut m = scalar_module(n, value);
    seqc_compiler::ir::kernel::vector::mark(&mut m.kernels[0].body, 4);
    m
}

/// The same kernel with its loop left serial (scalar code).
fn scalar_module(n: i64, value: Expr) -> KernelModule {
    let body = vec![Stmt::For {
        var: Var(1),
        extent: Expr::Int(n),
        kind: LoopKind::Serial,
        body: vec![Stmt::Store { param: 1, index: Expr::Var(Var(1)), value }],
    }];
    KernelModule {
        name: "t".into(),
        dims: vec!["B".into()],
        buffers: vec![
            Buffer { name: "x".into(), size: Expr::Int(n), role: Role::Input("x".into()) },
            Buffer { name: "out".into(), size: Expr::Int(n), role: Role::Temp },
        ],
        kernels: vec![Kernel { name: "k".into(), params: 2, grid_var: Var(0), body, vars: 2, regs: 0, scratch: None }],
        launches: vec![Launch::Kernel { kernel: 0, grid: Expr::Int(1), args: vec![BufId(0), BufId(1)] }],
        outputs: vec![("out".into(), BufId(1))],
        next_states: vec![],
    }
}

fn both(m: &KernelModule, dims: &[i64]) -> (Vec<f32>, Vec<f32>) {
    let n = seqc_compiler::ir::kernel::eval::int(&m.buffers[0].size, dims) as usize;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut mem = Memory { buffers: vec![x.clone(), vec![0.0; n]] };
    run(m, dims, &mut mem);
    let code = seqc_cranelift::compile(m).unwrap();
    let mut out = vec![0f32; n];
    let ptrs = [x.as_ptr() as *mut f32, out.as_mut_ptr()];
    // SAFETY: two buffers of `n` elements, as the kernel expects.
    unsafe { code.kernels[0](ptrs.as_ptr(), dims.as_ptr(), 0, 1) };
    (mem.buffers.remove(1), out)
}

/// The one-kernel module `m`, compiled, run on `x` (buffer 0, `B` = 1).
fn compiled_on(m: &KernelModule, x: &[f32]) -> Vec<f32> {
    let code = seqc_cranelift::compile(m).unwrap();
    let mut out = vec![0f32; x.len()];
    let ptrs = [x.as_ptr() as *mut f32, out.as_mut_ptr()];
    // SAFETY: two buffers of `x.len()` elements, as the kernel expects.
    unsafe { code.kernels[0](ptrs.as_ptr(), [1i64].as_ptr(), 0, 1) };
    out
}

#[test]
fn floored_division_and_euclidean_remainder() {
    let shifted = || Expr::int(IntOp::Sub, Expr::Var(Var(1)), Expr::Int(9));
    for divisor in [Expr::Int(2), Expr::Int(4), Expr::Int(3), Expr::Int(-3), Expr::Dim(0)] {
        for op in [IntOp::Div, IntOp::Rem] {
            let value = Expr::ToFloat(Box::new(Expr::Int2(op, Box::new(shifted()), Box::new(divisor.clone()))));
            let (want, got) = both(&module(19, value), &[5]);
            assert_eq!(got, want, "{op:?} by {divisor:?}");
            let first = want[0];
            // i = 0: -9 floored by 2 is -5, Euclidean remainder 1 (by the oracle).
            if divisor == Expr::Int(2) {
                assert_eq!(first, if op == IntOp::Div { -5.0 } else { 1.0 });
            }
        }
    }
}

#[test]
fn vector_loops_match_scalar_ones_with_a_tail() {
    let i = || Expr::Load { param: 0, index: Box::new(Expr::Var(Var(1))) };
    let value = Expr::call(
        ScalarFn::Add,
        vec![
            Expr::call(ScalarFn::Exp, vec![Expr::call(ScalarFn::Mul, vec![i(), Expr::Float(-0.37)])]),
            Expr::call(ScalarFn::Tanh, vec![i()]),
        ],
    );
    for n in [1, 3, 4, 7, 13] {
        let m = module(n, value.clone());
        let kind = if n < 4 { LoopKind::Unroll(n as u32) } else { LoopKind::Vector(4) };
        assert!(matches!(m.kernels[0].body[0], Stmt::For { kind: k, .. } if k == kind), "n = {n}: marked {kind:?}");
        let (want, got) = both(&m, &[1]);
        for (a, b) in want.iter().zip(&got) {
            assert!((a - b).abs() <= 4.0 * f32::EPSILON * a.abs().max(1.0), "n = {n}: {a} vs {b}");
        }
    }
}

/// Every inline element function against the interpreter's f64 definition, on
/// inputs across its range, in vector loops and in scalar code: within `ulps`
/// units in the last place of the result, plus `abs` (for `gelu`, whose `erf`
/// is an absolute approximation).
#[test]
fn inline_element_functions_are_accurate_in_both_forms() {
    let cases: &[(ScalarFn, &str, f64, f64, &[f32])] = &[
        (ScalarFn::Exp, "exp", 2.0, 0.0, &[-87.0, 87.0]),
        (ScalarFn::Log, "log", 2.0, 0.0, &[1e-30, 1e30]),
        (ScalarFn::Log1p, "log1p", 4.0, 0.0, &[-0.999, 1e6]),
        (ScalarFn::Tanh, "tanh", 4.0, 0.0, &[-12.0, 12.0]),
        (ScalarFn::Sigmoid, "sigmoid", 4.0, 0.0, &[-80.0, 80.0]),
        (ScalarFn::Silu, "silu", 4.0, 0.0, &[-80.0, 80.0]),
        (ScalarFn::Softplus, "softplus", 4.0, 0.0, &[-80.0, 80.0]),
        (ScalarFn::Gelu, "gelu", 4.0, 2e-7, &[-10.0, 10.0]),
    ];
    let n = 4001usize;
    for &(f, name, ulps, abs, range) in cases {
        let (lo, hi) = (range[0] as f64, range[1] as f64);
        // Geometric spacing for positive ranges spanning decades, else linear
        // (with the small values near 0 where series and cancellation meet).
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f64 / (n - 1) as f64;
                if lo > 0.0 {
                    (lo * (hi / lo).powf(t)) as f32
                } else {
                    let v = lo + (hi - lo) * t;
                    if i % 2 == 0 {
                        v as f32
                    } else {
                        (v * 1e-3) as f32
                    }
                }
            })
            .collect();
        let load = Expr::Load { param: 0, index: Box::new(Expr::Var(Var(1))) };
        let vector = module(n as i64, Expr::call(f, vec![load.clone()]));
        assert!(matches!(vector.kernels[0].body[0], Stmt::For { kind: LoopKind::Vector(4), .. }));
        let scalar = scalar_module(n as i64, Expr::call(f, vec![load]));
        for (form, m) in [("vector", vector), ("scalar", scalar)] {
            for (xi, got) in x.iter().zip(&compiled_on(&m, &x)) {
                let want = seqc_compiler::sema::consts::apply(name, &[*xi as f64]);
                let tol = ulps * f64::from(f32::EPSILON) * want.abs() + abs * f64::from(xi.abs()).max(1.0);
                let tol = tol.max(f64::from(f32::MIN_POSITIVE));
                assert!(
                    (f64::from(*got) - want).abs() <= tol,
                    "{name} ({form}) at {xi:e}: {got:e}, want {want:e} (error {:e})",
                    (f64::from(*got) - want).abs()
                );
            }
        }
    }
}

/// Values that read the loop index other than as an address (rope's converted
/// index, comparisons of it selecting values and guarding shifted reads) are
/// computed lane by lane inside a vector loop, and match the evaluator.
#[test]
fn index_reads_are_computed_lane_by_lane() {
    let i = || Expr::Var(Var(1));
    let fi = || Expr::ToFloat(Box::new(i()));
    for n in [3i64, 4, 5, 8, 13, 19] {
        let half = Expr::Int(n / 2);
        let angle = Expr::select(
            Expr::cmp(CmpOp::Lt, i(), half.clone()),
            fi(),
            Expr::call(ScalarFn::Sub, vec![fi(), Expr::ToFloat(Box::new(half.clone()))]),
        );
        let shifted = Expr::int(IntOp::Sub, i(), Expr::Int(2));
        let guarded = Expr::select(
            Expr::and(
                Expr::cmp(CmpOp::Ge, shifted.clone(), Expr::Int(0)),
                Expr::cmp(CmpOp::Lt, shifted.clone(), Expr::Int(n)),
            ),
            Expr::Load {
                param: 0,
                index: Box::new(Expr::int(IntOp::Max, Expr::int(IntOp::Min, shifted, Expr::Int(n - 1)), Expr::Int(0))),
            },
            Expr::Float(0.0),
        );
        let value = Expr::call(
            ScalarFn::Add,
            vec![Expr::call(ScalarFn::Cos, vec![Expr::call(ScalarFn::Mul, vec![angle, Expr::Float(0.3)])]), guarded],
        );
        let m = module(n, value);
        if n >= 4 {
            assert!(matches!(m.kernels[0].body[0], Stmt::For { kind: LoopKind::Vector(4), .. }), "n = {n}");
        }
        let (want, got) = both(&m, &[1]);
        for (a, b) in want.iter().zip(&got) {
            assert!((a - b).abs() <= 4.0 * f32::EPSILON * a.abs().max(1.0), "n = {n}: {a} vs {b}");
        }
    }
}

/// Vector reductions (two accumulator sets in the main loop, one more chunk,
/// then a scalar tail) sum and take maxima exactly as the evaluator does, for
/// every length around the chunk sizes.
#[test]
fn vector_reductions_cover_every_remainder() {
    use seqc_compiler::ir::kernel::Reg;
    for n in [2i64, 3, 4, 5, 7, 8, 9, 11, 12, 13, 16, 17, 23, 64] {
        let x = || Expr::Load { param: 0, index: Box::new(Expr::Var(Var(1))) };
        let acc =
            |r: u32, f: ScalarFn, v: Expr| Stmt::Set { reg: Reg(r), value: Expr::call(f, vec![Expr::Reg(Reg(r)), v]) };
        let mut body = vec![
            Stmt::Set { reg: Reg(0), value: Expr::Float(0.0) },
            Stmt::Set { reg: Reg(1), value: Expr::Float(f64::NEG_INFINITY) },
            Stmt::For {
                var: Var(1),
                extent: Expr::Int(n),
                kind: LoopKind::Serial,
                body: vec![
                    acc(0, ScalarFn::Add, x()),
                    // Largest in the middle, so each chunk and the tail matter.
                    acc(
                        1,
                        ScalarFn::Max,
                        Expr::call(
                            ScalarFn::Neg,
                            vec![Expr::call(
                                ScalarFn::Abs,
                                vec![Expr::call(ScalarFn::Sub, vec![x(), Expr::Float((n / 2) as f64 + 0.25)])],
                            )],
                        ),
                    ),
                ],
            },
            Stmt::Store { param: 1, index: Expr::Int(0), value: Expr::Reg(Reg(0)) },
            Stmt::Store { param: 1, index: Expr::Int(1), value: Expr::Reg(Reg(1)) },
        ];
        seqc_compiler::ir::kernel::vector::mark(&mut body, 4);
        if n >= 4 {
            assert!(matches!(body[2], Stmt::For { kind: LoopKind::Vector(4), .. }), "n = {n}");
        }
        let m = KernelModule {
            name: "t".into(),
            dims: vec!["B".into()],
            buffers: vec![
                Buffer { name: "x".into(), size: Expr::Int(n), role: Role::Input("x".into()) },
                Buffer { name: "out".into(), size: Expr::Int(n), role: Role::Temp },
            ],
            kernels: vec![Kernel {
                name: "k".into(),
                params: 2,
                grid_var: Var(0),
                body,
                vars: 2,
                regs: 2,
                scratch: None,
            }],
            launches: vec![Launch::Kernel { kernel: 0, grid: Expr::Int(1), args: vec![BufId(0), BufId(1)] }],
            outputs: vec![("out".into(), BufId(1))],
            next_states: vec![],
        };
        let (want, got) = both(&m, &[1]);
        // Small integers: every order of summation is exact.
        assert_eq!(got[..2], want[..2], "n = {n}");
        assert_eq!(want[0], (n * (n - 1) / 2) as f32, "n = {n}: the oracle's sum");
    }
}

/// `sin` and `cos` against f64 on the very f32 arguments, in vector loops and
/// scalar code, over rope's range of angles (positions to 20,000 at
/// frequency 1): within 4e-7 absolute (they are bounded by 1), and a few ulp
/// near zero, where `sin x` is about `x`.
#[test]
fn sin_and_cos_are_accurate_over_rope_angles() {
    let n = 40_001usize;
    let x: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 / (n - 1) as f64 * 2.0 - 1.0;
            // Half the points over +-20,000, half over +-4 (near the zeros).
            (if i % 2 == 0 { 20_000.0 * t } else { 4.0 * t }) as f32
        })
        .chain([0.0, -0.0, 1e-30, -1e-20, 3e-8, std::f32::consts::PI, std::f32::consts::FRAC_PI_2])
        .collect();
    let n = x.len();
    let load = Expr::Load { param: 0, index: Box::new(Expr::Var(Var(1))) };
    for (f, name) in [(ScalarFn::Sin, "sin"), (ScalarFn::Cos, "cos")] {
        let vector = module(n as i64, Expr::call(f, vec![load.clone()]));
        let scalar = scalar_module(n as i64, Expr::call(f, vec![load.clone()]));
        for (form, m) in [("vector", vector), ("scalar", scalar)] {
            for (xi, got) in x.iter().zip(&compiled_on(&m, &x)) {
                let want = seqc_compiler::sema::consts::apply(name, &[*xi as f64]);
                // Relative below |x| = 1 (sin x ~ x); absolute beyond.
                let tol = if xi.abs() < 1.0 {
                    (4.0 * f64::from(f32::EPSILON) * want.abs()).max(f64::from(f32::MIN_POSITIVE))
                } else {
                    4e-7
                };
                assert!((f64::from(*got) - want).abs() <= tol, "{name} ({form}) at {xi:e}: {got:e}, want {want:e}");
            }
        }
    }
}
