/*
** repl_edit.c -- the REPL's line editor on a terminal: libedit through its
** own API (histedit.h), fed by the event loop.  repl.c starts a line
** (eddy__edit_begin: libedit draws the prompt) and calls eddy__edit_keys
** whenever fd 0 is readable; libedit runs one editing command a call
** (EL_UNBUFFERED), reading its keys through eddy__repl_read_key, and
** Enter hands the line over.  Between keys the loop runs.
**
** Nothing here waits for a key: the loop must run on.  A command that
** needs keys that have not come (the rest of an escape sequence, the key
** after Ctrl-V) gives up, and runs again from its first key when they
** come (see Keys).
**
** Not libedit's readline layer, which eddy used at first: it keeps a
** pointer into a buffer that grows without it (rl_line_buffer: lines of
** a few KiB made it write to freed memory), hands the prompt to a
** conversion that fails on bytes that are not text (and then reads
** through a null pointer), and its completion listing, quoted insert and
** incremental search read keys in loops of their own, with the event
** loop stopped.  Here each of those takes one key and returns.
*/
#include <histedit.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl.h"

/* What ends a word to complete: what cannot be in "name.field:method". */
#define WORD_BREAKS L" \t\n\"\\'`@$><=;|&{(+-*/%^~#,[)}"

#define MAX_SEQ 32  /* keys one command may read (escape sequences) */

static struct {
  EditLine *el;
  HistoryW *hist;
  lua_State *L;         /* the REPL's state: what Tab completes */
  FILE *out;            /* the terminal (libedit writes there too) */
  wchar_t *prompt;      /* the prompt shown */
  wchar_t seq[MAX_SEQ + 1];  /* the keys the command being run read */
  size_t nseq;
  int incomplete;       /* ... and it needs more that have not come */
  int eof;              /* Ctrl-D on an empty line */
  int hangup;           /* fd 0 ended or failed */
  unsigned long cmds;   /* editing commands run (from 1), */
  unsigned long tab;    /* ... the last Tab of this line among them, or 0 */
} ed;

/* {====================================================== Keys */

/*
** libedit reads the keys of a command here.  A key that has not come
** fails the read (and the command: libedit drops what it read of an
** escape sequence); the keys the command read are kept, and pushed back
** before the next keys (eddy__edit_keys), so the command runs again from
** its first key, as if it had waited.
*/
static int read_key(EditLine *el, wchar_t *c) {
  int n = eddy__repl_read_key(c);
  (void)el;
  if (n == 1) {
    if (ed.nseq < MAX_SEQ) ed.seq[ed.nseq++] = *c;
  } else if (n == -2) {
    ed.incomplete = 1;
    n = -1;
  } else {
    ed.hangup = 1;
  }
  return n;
}

static wchar_t *prompt_of(EditLine *el) {
  (void)el;
  return ed.prompt != NULL ? ed.prompt : (wchar_t *)L"";
}

/* Ctrl-V (and Insert): insert the next key as it is (libedit's own
** would wait for it). */
static unsigned char quoted_insert(EditLine *el, int ch) {
  wchar_t key[2] = {L'\0', L'\0'};
  (void)ch;
  if (el_wgetc(el, &key[0]) != 1) return ed.incomplete ? CC_NORM : CC_ERROR;
  if (key[0] == L'\0' || el_winsertstr(el, key) != 0) return CC_ERROR;
  return CC_REFRESH;
}

/* Ctrl-D: the end of input on an empty line, else delete the character
** under the cursor (libedit's em-delete-or-list, telling us which). */
static unsigned char eof_or_delete(EditLine *el, int ch) {
  const LineInfoW *li = el_wline(el);
  (void)ch;
  if (li->lastchar == li->buffer) {
    ed.eof = 1;
    return CC_EOF;
  }
  if (li->cursor == li->lastchar) return CC_ERROR;
  el_cursor(el, 1);
  el_deletestr(el, 1);
  return CC_REFRESH;
}

/* }====================================================== */

/* {====================================================== Screen */

/* The screen's columns (at least 1). */
static size_t screen_columns(void) {
  int cols = 0;
  el_get(ed.el, EL_GETTC, "co", &cols);
  return cols > 0 ? (size_t)cols : 1;
}

/* The screen column after the prompt and the line's first n characters,
** counting from the prompt's first column. */
static size_t line_column(const LineInfoW *li, size_t n) {
  size_t col = eddy__repl_column(ed.prompt, wcslen(ed.prompt), 0);
  return eddy__repl_column(li->buffer, n, col);
}

void eddy__edit_erase(void) {
  const LineInfoW *li = el_wline(ed.el);
  size_t up = line_column(li, (size_t)(li->cursor - li->buffer)) /
              screen_columns();
  fputs("\r", ed.out);
  while (up-- > 0 && el_set(ed.el, EL_ECHOTC, "-s", "up", NULL) == 0) {}
  if (el_set(ed.el, EL_ECHOTC, "-s", "cd", NULL) != 0)
    fputs("\n", ed.out);  /* cannot clear: leave it, go below it */
  fflush(ed.out);
}

void eddy__edit_redraw(void) {
  el_set(ed.el, EL_REFRESH);
}

/*
** libedit (3.1-20221030, Debian 12's) keeps a copy of the screen with the
** terminal's rows.  A line longer than that copy is drawn by scrolling
** the copy, which can leave libedit's idea of the cursor's row behind;
** a character typed at the end of the line then wraps past the copy's
** last row, and libedit writes through a null row (refresh.c,
** re_fastputc: a crash).  So, before each key, the copy gets the rows the
** line may need after the key (a key adds at most MAX_KEY_COLUMNS; a
** yank or a history line may add more, and the check before the next
** key makes room before anything is typed after them), doubling as the
** line grows.  libedit takes the terminal's size again for each new line
** (read.c, read_prepare).  Past the real screen, libedit redraws a line
** edited in its middle at misplaced rows, as GNU readline does; nothing
** breaks.
*/
#define MAX_KEY_COLUMNS 9  /* a kept byte shows as \U+100XX: 8 */

static void fit_screen(void) {
  const LineInfoW *li = el_wline(ed.el);
  size_t cols = screen_columns(), need;
  int rows = 0;
  char buf[32];
  if (cols < 2) return;  /* libedit keeps 2 at least: cannot happen */
  el_get(ed.el, EL_GETTC, "li", &rows);
  /* A double-width character that does not fit at the end of a row goes
  ** to the next: count rows of cols - 1 columns; 2 more for the row a
  ** full last row wraps to and the one past it. */
  need = (line_column(li, (size_t)(li->lastchar - li->buffer)) +
          MAX_KEY_COLUMNS) / (cols - 1) + 2;
  if (need < (size_t)rows) return;
  if (need > INT_MAX / 2) need = INT_MAX / 2;
  eddy__edit_erase();  /* libedit forgets what it drew */
  snprintf(buf, sizeof buf, "%d", (int)need * 2);
  el_set(ed.el, EL_SETTC, "li", buf, NULL);
  eddy__edit_redraw();
}

/* Put the cursor at the start of the line's last row. */
static void go_to_last_row(const LineInfoW *li) {
  size_t cols = screen_columns();
  size_t below = line_column(li, (size_t)(li->lastchar - li->buffer)) / cols -
                 line_column(li, (size_t)(li->cursor - li->buffer)) / cols;
  fputs("\r", ed.out);
  while (below-- > 0) fputs("\n", ed.out);
}

/* Ctrl-Z when the terminal passes it on as a key (its "susp" character
** is another): stop, as a shell's job; eddy__edit_resume follows. */
static unsigned char suspend(EditLine *el, int ch) {
  (void)el;
  (void)ch;
  kill(0, SIGTSTP);
  return CC_NORM;
}

void eddy__edit_resume(int draw) {
  /* libedit believes the terminal still in its editing mode: leave that
  ** mode (a no-op on the terminal) so that it sets it up anew. */
  el_set(ed.el, EL_PREP_TERM, 0);
  el_set(ed.el, EL_PREP_TERM, 1);
  if (draw) {
    fputs("\r", ed.out);
    eddy__edit_redraw();
  }
}

/* }====================================================== */

/* {====================================================== Completion */

/* Show the names below the line, in columns, then the line again. */
static void list_names(EditLine *el, char **names, size_t n) {
  const LineInfoW *li = el_wline(el);
  size_t cols = screen_columns(), width = 0, per_row, rows, r, c;
  for (r = 0; r < n; r++)
    if (strlen(names[r]) + 2 > width) width = strlen(names[r]) + 2;
  per_row = cols / width > 0 ? cols / width : 1;
  rows = (n + per_row - 1) / per_row;
  go_to_last_row(li);
  fputs("\n", ed.out);  /* below the line */
  for (r = 0; r < rows; r++) {  /* down the columns, as GNU readline */
    for (c = 0; c < per_row && c * rows + r < n; c++) {
      const char *name = names[c * rows + r];
      int last = c + 1 == per_row || (c + 1) * rows + r >= n;
      fprintf(ed.out, "%-*s", last ? 0 : (int)width, name);
    }
    fputs("\n", ed.out);
  }
  fflush(ed.out);
  eddy__edit_redraw();
}

/*
** Tab: complete the name before the cursor with what all its completions
** share; when they share no more, a second Tab in a row lists them.
*/
static unsigned char complete(EditLine *el, int ch) {
  const LineInfoW *li = el_wline(el);
  const wchar_t *start = li->cursor;
  size_t len, n, shared, i;
  char *word, **names;
  unsigned char done = CC_ERROR;  /* nothing to add: beep */
  int again = ed.tab != 0 && ed.tab + 1 == ed.cmds;
  (void)ch;
  ed.tab = ed.cmds;
  while (start > li->buffer && wcschr(WORD_BREAKS, start[-1]) == NULL)
    start--;
  len = (size_t)(li->cursor - start);
  word = (char *)malloc(len + 1);
  if (word == NULL) return CC_ERROR;
  for (i = 0; i < len; i++) {
    if (start[i] > 0x7f) {  /* names are ASCII: nothing completes it */
      free(word);
      return CC_ERROR;
    }
    word[i] = (char)start[i];
  }
  word[len] = '\0';
  n = eddy__repl_complete(ed.L, word, &names);
  free(word);
  if (n == 0) return CC_ERROR;
  /* Sorted: what the first and the last share, all share. */
  for (shared = 0; names[0][shared] != '\0' &&
                   names[0][shared] == names[n - 1][shared]; shared++) {}
  if (shared > len) {
    wchar_t *rest = eddy__repl_widen(names[0] + len, shared - len);
    if (rest != NULL && el_winsertstr(el, rest) == 0) done = CC_REFRESH;
    free(rest);
  } else if (n > 1 && again) {
    list_names(el, names, n);
    done = CC_NORM;
  }
  for (i = 0; i < n; i++) free(names[i]);
  free(names);
  return done;
}

/* }====================================================== */

/* {====================================================== Lines */

/* eddy's keys, over libedit's emacs ones (before the user's settings). */
static void bind_keys(EditLine *el) {
  el_set(el, EL_BIND, "^I", "eddy-complete", NULL);
  el_set(el, EL_BIND, "^Z", "eddy-suspend", NULL);
  /* The keys GNU readline's users expect (Home, End, Delete, Ctrl-arrows),
  ** as libedit's readline layer binds them. */
  el_set(el, EL_BIND, "\\e[1~", "ed-move-to-beg", NULL);
  el_set(el, EL_BIND, "\\e[4~", "ed-move-to-end", NULL);
  el_set(el, EL_BIND, "\\e[7~", "ed-move-to-beg", NULL);
  el_set(el, EL_BIND, "\\e[8~", "ed-move-to-end", NULL);
  el_set(el, EL_BIND, "\\e[H", "ed-move-to-beg", NULL);
  el_set(el, EL_BIND, "\\e[F", "ed-move-to-end", NULL);
  el_set(el, EL_BIND, "\\e[3~", "ed-delete-next-char", NULL);
  el_set(el, EL_BIND, "\\e[1;5C", "em-next-word", NULL);
  el_set(el, EL_BIND, "\\e[1;5D", "ed-prev-word", NULL);
  el_set(el, EL_BIND, "\\e[5C", "em-next-word", NULL);
  el_set(el, EL_BIND, "\\e[5D", "ed-prev-word", NULL);
  el_set(el, EL_BIND, "\\e\\e[C", "em-next-word", NULL);
  el_set(el, EL_BIND, "\\e\\e[D", "ed-prev-word", NULL);
}

/*
** libedit's vi mode is refused: its commands write out of their buffers
** (an AddressSanitizer build of libedit 3.1-20221030 under
** tools/fuzz/repl_fuzz.py: negative memcpy sizes in cv_yank, overflows in
** cv_csearch and re_fastaddc, a crash in ed_command), whether keys come
** one at a time or a command waits for them.
*/
static void refuse_vi(EditLine *el) {
  const char *editor;
  if (el_get(el, EL_EDITOR, &editor) != 0 || strcmp(editor, "vi") != 0)
    return;
  fputs("eddy: the line editor's vi mode is not supported (libedit's vi "
        "commands corrupt memory); using emacs keys\n", stderr);
  el_set(el, EL_EDITOR, "emacs");  /* libedit's emacs keys again */
  bind_keys(el);
}

int eddy__edit_open(lua_State *L) {
  HistEventW ev;
  ed.L = L;
  ed.out = stdout;
  ed.el = el_init_fd("eddy", stdin, stdout, stderr, 0, 1, 2);
  ed.hist = history_winit();
  if (ed.el == NULL || ed.hist == NULL) {
    eddy__edit_close();
    return -1;
  }
  history_w(ed.hist, &ev, H_SETSIZE, INT_MAX);  /* the whole session */
  el_wset(ed.el, EL_HIST, history_w, ed.hist);
  el_set(ed.el, EL_GETCFN, read_key);
  el_wset(ed.el, EL_PROMPT_ESC, prompt_of, EDDY_PROMPT_IGNORE);
  el_set(ed.el, EL_EDITOR, "emacs");
  /* Wide names: libedit keeps them (it leaks its copies of narrow ones). */
  el_wset(ed.el, EL_ADDFN, L"eddy-complete", L"Complete the name", complete);
  el_wset(ed.el, EL_ADDFN, L"eddy-quoted-insert", L"Insert the next key",
          quoted_insert);
  el_wset(ed.el, EL_ADDFN, L"eddy-eof-or-delete",
          L"End of input on an empty line, else delete", eof_or_delete);
  el_wset(ed.el, EL_ADDFN, L"eddy-suspend", L"Suspend", suspend);
  bind_keys(ed.el);
  el_source(ed.el, NULL);  /* ~/.editrc */
  refuse_vi(ed.el);
  /* After the user's settings: keys whose libedit commands would read
  ** the next keys in a loop of their own, the event loop stopped.
  ** Ctrl-R searches the history for the text typed so far instead, in
  ** one key; M-x (extended command) does nothing. */
  el_set(ed.el, EL_BIND, "^D", "eddy-eof-or-delete", NULL);
  el_set(ed.el, EL_BIND, "^V", "eddy-quoted-insert", NULL);
  el_set(ed.el, EL_BIND, "\\e[2~", "eddy-quoted-insert", NULL);
  el_set(ed.el, EL_BIND, "^R", "ed-search-prev-history", NULL);
  el_set(ed.el, EL_BIND, "^[x", "ed-unassigned", NULL);
  el_set(ed.el, EL_BIND, "^[X", "ed-unassigned", NULL);
  return 0;
}

void eddy__edit_close(void) {
  if (ed.el != NULL) el_end(ed.el);  /* the terminal as it was */
  if (ed.hist != NULL) history_wend(ed.hist);
  free(ed.prompt);
  memset(&ed, 0, sizeof ed);
}

void eddy__edit_begin(const char *prompt) {
  wchar_t *c;
  free(ed.prompt);
  ed.prompt = eddy__repl_widen(prompt, strlen(prompt));
  /* A byte kept as a character would not show at all (libedit cannot
  ** write it back): show it as '?'. */
  for (c = ed.prompt; c != NULL && *c != L'\0'; c++)
    if (*c > 0x10ffff) *c = L'?';
  ed.nseq = 0;
  ed.eof = ed.hangup = 0;
  ed.tab = 0;
  el_set(ed.el, EL_UNBUFFERED, 1);  /* an empty line; the prompt drawn */
}

void eddy__edit_end(void) {
  el_set(ed.el, EL_UNBUFFERED, 0);  /* the terminal as entries expect it */
}

int eddy__edit_keys(char **line, size_t *len) {
  do {  /* the keys read ahead too: fd 0 may have no more */
    int n;
    const wchar_t *text;
    fit_screen();
    if (ed.nseq > 0) {  /* a command gave up: its keys again, then more */
      ed.seq[ed.nseq] = L'\0';
      el_wpush(ed.el, ed.seq);
    }
    ed.incomplete = 0;
    ed.cmds++;
    text = el_wgets(ed.el, &n);
    if (ed.incomplete && !ed.hangup) {  /* until more keys come */
      if (ed.nseq == MAX_SEQ) ed.nseq = 0;  /* too long to replay: dropped */
      return 0;
    }
    ed.nseq = 0;
    if (ed.eof || ed.hangup) {
      eddy__edit_end();
      *line = NULL;
      *len = 0;
      return 1;
    }
    if (text != NULL && n > 0 && text[n - 1] == L'\n') {
      eddy__edit_end();
      *line = eddy__repl_narrow(text, (size_t)n - 1, len);
      if (*line == NULL) {  /* out of memory: an empty line, else none */
        *line = (char *)calloc(1, 1);
        *len = 0;
      }
      return 1;
    }
  } while (eddy__repl_keys_ahead());
  return 0;
}

void eddy__edit_history(const char *text, size_t len) {
  HistEventW ev;
  wchar_t *w = eddy__repl_widen(text, len);
  if (w == NULL) return;
  history_w(ed.hist, &ev, H_ENTER, w);
  free(w);
}

/* }====================================================== */
