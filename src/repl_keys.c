/*
** repl_keys.c -- the terminal's text for the REPL's line editor: the keys
** read for libedit (keeping the bytes that are not text in the
** terminal's character set, which libedit would drop), text to and from
** the wide characters libedit edits, and how wide text shows.  All of it
** runs in the terminal's character set, made current by the caller
** (repl.c: enter_charset).
*/
#define _GNU_SOURCE  /* wcwidth */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include "repl.h"

static unsigned char keys[MB_LEN_MAX];  /* bytes read ahead */
static size_t nkeys;

/*
** What stands for a byte that starts no character (a lone 0xff typed or
** pasted on a UTF-8 terminal): RAW_KEY plus the byte, past Unicode's last
** code point, so no text decodes to it.  libedit shows such a character
** as "\U+100FF"; the line handed to the entry has the byte back.  (GNU
** readline keeps such a byte; libedit's own key reader drops it.)
*/
#define RAW_KEY 0x110000

/*
** Decode the character at s (n bytes): its length, and the character in
** *c; a byte that does not start one decodes alone, as RAW_KEY plus the
** byte (glibc decodes UTF-8 past Unicode's range too: so do those bytes).
** (size_t)-2 when the n bytes start a character but end before it does.
*/
static size_t decode(const char *s, size_t n, wchar_t *c) {
  mbstate_t st;
  size_t len;
  memset(&st, 0, sizeof st);
  len = mbrtowc(c, s, n, &st);
  if (len == (size_t)-2) return len;
  if (len == (size_t)-1 || *c > 0x10ffff) {
    *c = (wchar_t)(RAW_KEY + (unsigned char)*s);
    return 1;
  }
  return len > 0 ? len : 1;  /* 0: a NUL byte */
}

/* The screen column after drawing c at column 'col', as libedit draws
** it: tabs to a multiple of 8, control characters as ^X, others as
** wcwidth says, or as \U+XXXX when not printable. */
static size_t column_after(wchar_t c, size_t col) {
  int w = wcwidth(c);
  if (c == '\t') return (col + 8) & ~(size_t)7;
  if (c < 0x20 || c == 0x7f) return col + 2;
  if (w >= 0) return col + (size_t)w;
  return col + (c > 0xffff ? 8 : 7);
}

size_t eddy__repl_column(const wchar_t *s, size_t n, size_t col) {
  int ignoring = 0;
  for (; n > 0; s++, n--) {
    if (*s == EDDY_PROMPT_IGNORE) ignoring = !ignoring;
    else if (!ignoring) col = column_after(*s, col);
  }
  return col;
}

/* Read a byte from fd 0 without waiting (-1 and EAGAIN when none has
** come).  fd 0 stays blocking but for this read: entries reading stdin
** expect it so, and so do the processes sharing the terminal.  (Polling
** first and then reading would wait when Ctrl-C flushes the terminal's
** input between the two.) */
static ssize_t read_byte(unsigned char *b) {
  int flags = fcntl(0, F_GETFL), toggle, saved;
  ssize_t n;
  toggle = flags != -1 && (flags & O_NONBLOCK) == 0;
  if (toggle) fcntl(0, F_SETFL, flags | O_NONBLOCK);
  n = read(0, b, 1);
  saved = errno;
  if (toggle) fcntl(0, F_SETFL, flags);
  errno = saved;
  return n;
}

/*
** libedit's key reader: reads the keys as libedit's own does (a byte at a
** time, so nothing past the keys is taken from fd 0), but keeps a byte
** that starts no character (RAW_KEY plus the byte), and never waits:
** when the rest of a character has not come, the bytes so far stay in
** 'keys' and it returns -2.  The bytes after a byte that started no
** character are decoded again: they stay in 'keys' for the next call.
*/
int eddy__repl_read_key(wchar_t *c) {
  size_t len = (size_t)-2;
  while (len == (size_t)-2) {  /* 'keys' starts a character, or is empty */
    ssize_t n;
    if (nkeys > 0 &&
        (len = decode((const char *)keys, nkeys, c)) != (size_t)-2)
      break;
    n = read_byte(keys + nkeys);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -2;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 && nkeys == 0) return n < 0 ? -1 : 0;
    if (n <= 0 || ++nkeys == sizeof keys) {  /* cut short */
      *c = (wchar_t)(RAW_KEY + keys[0]);
      len = 1;
    }
  }
  nkeys -= len;
  memmove(keys, keys + len, nkeys);
  return 1;
}

int eddy__repl_keys_ahead(void) {
  return nkeys > 0;
}

void eddy__repl_drop_keys(void) {
  nkeys = 0;
}

wchar_t *eddy__repl_widen(const char *s, size_t n) {
  wchar_t *w = (wchar_t *)malloc((n + 1) * sizeof *w), *o = w;
  if (w == NULL) return NULL;
  while (n > 0) {
    size_t len = decode(s, n, o);
    if (len == (size_t)-2) {  /* cut short: the bytes as they are */
      *o = (wchar_t)(RAW_KEY + (unsigned char)*s);
      len = 1;
    }
    o++;
    s += len;
    n -= len;
  }
  *o = L'\0';
  return w;
}

char *eddy__repl_narrow(const wchar_t *w, size_t n, size_t *len) {
  char *s = (char *)malloc(n * MB_LEN_MAX + 1), *o = s;
  mbstate_t st;
  if (s == NULL) return NULL;
  memset(&st, 0, sizeof st);
  for (; n > 0; w++, n--) {
    size_t k;
    if (*w >= RAW_KEY && *w <= RAW_KEY + 0xff) {
      *o++ = (char)(*w - RAW_KEY);
    } else if ((k = wcrtomb(o, *w, &st)) != (size_t)-1) {
      o += k;
    } else {  /* not in the character set (cannot happen for typed keys) */
      *o++ = '?';
      memset(&st, 0, sizeof st);
    }
  }
  *o = '\0';
  *len = (size_t)(o - s);
  return s;
}
