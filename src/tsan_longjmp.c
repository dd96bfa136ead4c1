/*
** tsan_longjmp.c -- compiled into the ThreadSanitizer build only
** (meson.build, b_sanitize=thread).
**
** Debian's liblua5.4 is built with _FORTIFY_SOURCE, so the jumps of its
** errors and yields go through glibc's __longjmp_chk, which TSan does not
** intercept (it does intercept _setjmp, longjmp and siglongjmp).  TSan
** then never learns that a jump left the instrumented C frames between
** the setjmp and the longjmp: its shadow call stack deepens with every
** task step that yields from a C function, until storing a stack of over
** 65535 frames aborts the process (a CHECK in sanitizer_stackdepot.cpp),
** and every deeper stack is kept anew.  This definition, exported by
** libeddy and found before glibc's, hands the jump to longjmp: TSan's
** interceptor unwinds its shadow stack to the matching _setjmp, then
** jumps.  (glibc's check that the jump goes up the stack is lost, in
** this build only.)
*/
#undef _FORTIFY_SOURCE  /* else longjmp below would be __longjmp_chk again */
#include <setjmp.h>

void __longjmp_chk(jmp_buf env, int val) __attribute__((noreturn));

void __longjmp_chk(jmp_buf env, int val) {
  longjmp(env, val);
}
