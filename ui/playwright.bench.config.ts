import { defineConfig } from '@playwright/test';
import base from './playwright.config';

// scripts/bench.sh ui: the same --dev control plane, the benchmark spec.
export default defineConfig({ ...base, testDir: './bench', testMatch: '**/*.bench.ts', timeout: 600_000 });
