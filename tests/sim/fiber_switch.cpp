/* fiber_switch.cpp - how tests/sim/cuda_sim.h's fibers switch stacks: the
 * callee-saved registers pushed on the running stack, its pointer stored
 * in *from, `to` loaded and its registers popped, and `ret` goes on where
 * that stack last switched away. ucontext's swapcontext would also make a
 * system call for the signal mask at each switch, most of a simulation's
 * time. x86-64 System V only.
 */
#if !defined(__x86_64__)
#error "tests/sim switches fibers' stacks on x86-64 only"
#endif

extern "C" void sim_switch_stacks(void **from, void *to);

asm(".text\n"
    ".globl sim_switch_stacks\n"
    ".type sim_switch_stacks, @function\n"
    "sim_switch_stacks:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size sim_switch_stacks, .-sim_switch_stacks\n");
