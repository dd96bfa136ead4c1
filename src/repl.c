int eddy__repl_placeholder;
