import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run dev` proxies the API to a control plane (LQ_API, default the
// --dev one); the built UI is embedded in the control plane and served by it.
const api = process.env.LQ_API || 'https://127.0.0.1:7700';

export default defineConfig({
  plugins: [react()],
  // One bundle for a console served from the control plane itself.
  build: { chunkSizeWarningLimit: 1500 },
  server: { proxy: { '/limiquantix.storage.v1.': { target: api, secure: false } } },
});
