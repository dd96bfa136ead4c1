/*
** repl_keys.c -- the terminal's text for the REPL's line editor: the keys
** read for libedit (keeping the bytes that are not UTF-8, which libedit
** would drop), and how wide text shows.  All of it runs in the terminal's
** character set, made current by the caller (repl.c: enter_charset).
*/
#define _GNU_SOURCE  /* wcwidth */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include <editline/readline.h>

#include "repl.h"

static unsigned char keys[MB_LEN_MAX];  /* bytes read ahead */
static size_t nkeys;

/* What stands for a byte that is not UTF-8 on a UTF-8 terminal: RAW_KEY
** plus the byte, past Unicode's last code point (eddy__repl_read_key). */
#define RAW_KEY 0x110000

/*
** Decode the character at s (n bytes) in the terminal's character set
** (current): its length, and the character in *c; a byte that does not
** start one decodes alone, as RAW_KEY plus the byte.  (size_t)-2 when
** the n bytes start a character but end before it does.  glibc decodes
** UTF-8 past Unicode's last code point too: RAW_KEY's characters as
** libedit gives them back, but, in keys typed ('typed'), bytes that
** start no character.
*/
static size_t decode_key(const char *s, size_t n, wchar_t *c, int typed) {
  mbstate_t st;
  size_t len;
  memset(&st, 0, sizeof st);
  len = mbrtowc(c, s, n, &st);
  if (len == (size_t)-2) return len;
  if (len == (size_t)-1 || (typed && *c > 0x10ffff)) {
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

size_t eddy__repl_column(const char *s, size_t n, size_t col) {
  int ignoring = 0;
  while (n > 0) {
    wchar_t c;
    size_t len = decode_key(s, n, &c, 0);
    if (len == (size_t)-2) break;  /* cut short */
    if (c == RL_PROMPT_START_IGNORE) ignoring = !ignoring;
    else if (!ignoring) col = column_after(c, col);
    s += len;
    n -= len;
  }
  return col;
}

/*
** libedit's key reader on a UTF-8 terminal (rl_getc_function).  libedit's
** own drops a byte that is not UTF-8 (a lone 0xff typed or pasted), where
** GNU readline keeps it.  This one reads the keys as libedit's does, but
** keeps such a byte as a character that no input decodes to (decode_key:
** RAW_KEY plus the byte).  libedit shows it as "\U+100FF" and hands it
** back in the line as glibc encodes it (the four bytes F4 90 82|83 xx),
** which eddy__repl_unescape_raw turns back into the byte; the history
** holds lines so encoded (eddy__repl_escape_raw).  The bytes after a
** byte that started no character are decoded again: they stay in 'keys'
** for the next call.
*/
int eddy__repl_read_key(FILE *f) {
  wchar_t c;
  size_t len = (size_t)-2;
  (void)f;  /* libedit's input stream: fd 0 */
  while (len == (size_t)-2) {  /* 'keys' starts a character, or is empty */
    ssize_t n;
    if (nkeys > 0 &&
        (len = decode_key((const char *)keys, nkeys, &c, 1)) != (size_t)-2)
      break;
    n = read(0, keys + nkeys, 1);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd p;  /* fd 0 is non-blocking: wait, as libedit does */
      p.fd = 0;
      p.events = POLLIN;
      poll(&p, 1, -1);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 && nkeys == 0) return EOF;
    if (n <= 0 || ++nkeys == sizeof keys) {  /* cut short */
      c = (wchar_t)(RAW_KEY + keys[0]);
      len = 1;
    }
  }
  nkeys -= len;
  memmove(keys, keys + len, nkeys);
  return (int)c;
}

/* Turn the RAW_KEY characters of a line from libedit back into their
** bytes, in place; returns the line's new length. */
size_t eddy__repl_unescape_raw(char *s) {
  size_t i = 0, j = 0;
  while (s[i] != '\0') {
    const unsigned char *u = (const unsigned char *)s + i;
    if (u[0] == 0xf4 && u[1] == 0x90 && (u[2] & 0xfe) == 0x82 &&
        (u[3] & 0xc0) == 0x80) {
      s[j++] = (char)(0x80 | ((u[2] & 1) << 6) | (u[3] & 0x3f));
      i += 4;
    } else {
      s[j++] = s[i++];
    }
  }
  s[j] = '\0';
  return j;
}

/* A copy of s (malloc'ed; NULL when out of memory) where each byte that
** is not UTF-8 is its RAW_KEY character, as libedit would hold it. */
char *eddy__repl_escape_raw(const char *s) {
  size_t n = strlen(s);
  char *out = (char *)malloc(4 * n + 1), *o = out;
  if (out == NULL) return NULL;
  while (n > 0) {
    wchar_t c;
    size_t len = decode_key(s, n, &c, 1);
    if (len == (size_t)-2 || c >= RAW_KEY) {
      unsigned char b = (unsigned char)*s;
      *o++ = (char)0xf4;  /* RAW_KEY + b in UTF-8 */
      *o++ = (char)0x90;
      *o++ = (char)(0x82 | ((b >> 6) & 1));
      *o++ = (char)(0x80 | (b & 0x3f));
      len = 1;
    } else {
      memcpy(o, s, len);
      o += len;
    }
    s += len;
    n -= len;
  }
  *o = '\0';
  return out;
}

int eddy__repl_keys_ahead(void) {
  return nkeys > 0;
}

void eddy__repl_drop_keys(void) {
  nkeys = 0;
}
