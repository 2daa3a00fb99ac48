// The parts of `npm run backups` / `npm run restore` that are plain functions: reading pgBackRest's
// info, the moments --to takes and the time target pgBackRest is given. The restore itself runs
// against a real stack in the engine tier (test/engine/support/backups.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseInfo, parseMoment, recoveryTarget } from "../../ops/backups";

describe("pgBackRest's info as the status reads it", () => {
  test("backups oldest first with their times and sizes, and the archive's first and last segment across timelines", () => {
    const info = JSON.stringify([
      {
        name: "webstack",
        backup: [
          {
            label: "20261126-100000F",
            type: "full",
            timestamp: { start: 1795687200, stop: 1795687212 },
            info: { size: 23_068_672, repository: { delta: 2_936_012, size: 2_936_012 } },
          },
          {
            label: "20261126-100000F_20261127-100000D",
            type: "diff",
            timestamp: { start: 1795773600, stop: 1795773603 },
            info: { size: 24_117_248, repository: { delta: 131_072, size: 3_000_000 } },
          },
        ],
        archive: [
          { id: "15-1", min: "000000010000000000000001", max: "000000010000000000000009" },
          { id: "15-1", min: "00000002000000000000000A", max: "00000002000000000000000C" },
        ],
      },
    ]);
    assert.deepEqual(parseInfo(info), {
      backups: [
        {
          label: "20261126-100000F",
          type: "full",
          start: new Date(1795687200_000),
          stop: new Date(1795687212_000),
          size: 23_068_672,
          repoSize: 2_936_012,
        },
        {
          label: "20261126-100000F_20261127-100000D",
          type: "diff",
          start: new Date(1795773600_000),
          stop: new Date(1795773603_000),
          size: 24_117_248,
          repoSize: 131_072,
        },
      ],
      archive: { min: "000000010000000000000001", max: "00000002000000000000000C" },
    });
  });

  test("a stanza without backups or archive yet, and no stanza at all, are empty", () => {
    const empty = { backups: [], archive: { min: undefined, max: undefined } };
    assert.deepEqual(parseInfo(JSON.stringify([{ name: "webstack", backup: [], archive: [] }])), empty);
    assert.deepEqual(parseInfo(JSON.stringify([{ name: "webstack", archive: [{ min: null, max: null }] }])), empty);
    assert.deepEqual(parseInfo("[]"), empty);
  });
});

describe("--to", () => {
  test("takes an ISO 8601 moment with its zone, and gives pgBackRest the same moment in UTC", () => {
    for (const [text, target] of [
      ["2026-11-26T22:30:00Z", "2026-11-26 22:30:00.000+00"],
      ["2026-11-26T23:30:00+01:00", "2026-11-26 22:30:00.000+00"],
      ["2026-11-26 17:30:05.25-05:00", "2026-11-26 22:30:05.250+00"],
      ["2026-11-26T22:30Z", "2026-11-26 22:30:00.000+00"],
    ]) {
      assert.equal(recoveryTarget(parseMoment(text)), target, text);
    }
  });

  test("refuses a moment without a zone (it would be read in the deployer's), a date alone, and what is no moment", () => {
    for (const text of ["2026-11-26T22:30:00", "2026-11-26", "yesterday", "2026-13-40T25:00:00Z", ""]) {
      assert.throws(
        () => parseMoment(text),
        new Error(
          `--to must be a moment with its time zone, such as 2026-11-26T22:30:00Z or 2026-11-26T23:30:00+01:00 (got ${JSON.stringify(text)})`,
        ),
        text,
      );
    }
  });
});
