import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/**", "app/node_modules/**", "app/dist/**", "reports/**", ".stryker-tmp/**", "**/*.js", "**/*.mjs", "**/*.cjs"] },
  // Type-aware: an un-awaited promise in a test is a test that cannot fail.
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-floating-promises": [
        "error",
        // node:test's describe/test return promises the runner itself awaits.
        { allowForKnownSafeCalls: [{ from: "package", name: ["test", "describe", "it", "suite"], package: "node:test" }] },
      ],
      "@typescript-eslint/no-misused-promises": "error",
      "prefer-const": "error",
      eqeqeq: ["error", "always"],
    },
  },
);
