//! Code generation against the kernel IR's evaluator on hand-built kernels:
//! integer division and remainder of negative values (floored and Euclidean, by
//! constants, powers of two and run-time sizes); vector loops with a tail and
//! unrolled short loops.

use seqc_compiler::ir::kernel::eval::{run, Memory};
use seqc_compiler::ir::kernel::{Buffer, Expr, IntOp, Kernel, KernelModule, Launch, LoopKind, Role, Stmt, Var};
use seqc_compiler::ir::{kernel::BufId, ScalarFn};

/// One kernel writing `f(i)` for `i` in `0..n` into buffer 1 (`out`), reading
/// buffer 0 (`x[i] = i`); the loop is marked as the scheduler marks loops.
fn module(n: i64, value: Expr) -> KernelModule {
    let mut body = vec![Stmt::For {
        var: Var(1),
        extent: Expr::Int(n),
        kind: LoopKind::Serial,
        body: vec![Stmt::Store { param: 1, index: Expr::Var(Var(1)), value }],
    }];
    seqc_compiler::ir::kernel::vector::mark(&mut body, 4);
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
