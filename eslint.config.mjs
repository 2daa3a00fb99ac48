import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/**", "app/node_modules/**", "app/dist/**", "**/*.js", "**/*.mjs"] },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-floating-promises": "off",
      "prefer-const": "error",
      eqeqeq: ["error", "always"],
    },
  },
);
