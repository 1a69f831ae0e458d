DROP TABLE binary_contents;
