import { useEffect, useMemo, useState } from 'react';
import {
  Alert,
  Button,
  Form,
  FormGroup,
  Masthead,
  MastheadBrand,
  MastheadContent,
  MastheadMain,
  Nav,
  NavItem,
  NavList,
  Page,
  PageSection,
  PageSidebar,
  PageSidebarBody,
  TextInput,
  Title,
  Toolbar,
  ToolbarContent,
  ToolbarItem,
} from '@patternfly/react-core';
import { Role, errorText, makeApi, roleName, storeToken, storedToken } from './api';
import { Session, SessionContext } from './session';
import { Overview } from './pages/Overview';
import { Pools } from './pages/Pools';
import { Volumes } from './pages/Volumes';
import { Tasks } from './pages/Tasks';
import { Nodes } from './pages/Nodes';

const PAGES = [
  { path: 'overview', title: 'Overview', render: () => <Overview /> },
  { path: 'pools', title: 'Pools', render: () => <Pools /> },
  { path: 'volumes', title: 'Volumes', render: () => <Volumes /> },
  { path: 'tasks', title: 'Tasks', render: () => <Tasks /> },
  { path: 'nodes', title: 'Nodes', render: () => <Nodes /> },
];

function currentPath(): string {
  const p = window.location.hash.replace(/^#\/?/, '').split('?')[0];
  return PAGES.some((x) => x.path === p) ? p : 'overview';
}

export function App() {
  const [token, setToken] = useState(storedToken());
  const [session, setSession] = useState<Session | null>(null);
  const [signInError, setSignInError] = useState('');
  const [path, setPath] = useState(currentPath());

  useEffect(() => {
    const onHash = () => setPath(currentPath());
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  // Who the token belongs to decides what the UI offers (the API decides what it allows).
  useEffect(() => {
    if (!token) return;
    const api = makeApi(token);
    api.access
      .whoAmI({})
      .then((me) => {
        storeToken(token);
        setSession({ api, name: me.name, role: me.role, canWrite: me.role === Role.ADMIN });
        setSignInError('');
      })
      .catch((e) => {
        storeToken('');
        setSession(null);
        setSignInError(errorText(e));
      });
  }, [token]);

  if (!session) return <SignIn error={signInError} onToken={setToken} />;

  const page = PAGES.find((p) => p.path === path)!;
  const masthead = (
    <Masthead>
      <MastheadMain>
        <MastheadBrand>
          <Title headingLevel="h1" size="lg">
            LimiQuantix storage
          </Title>
        </MastheadBrand>
      </MastheadMain>
      <MastheadContent>
        <Toolbar>
          <ToolbarContent>
            <ToolbarItem align={{ default: 'alignEnd' }}>
              <span id="whoami">
                {session.name} ({roleName(session.role)})
              </span>
            </ToolbarItem>
            <ToolbarItem>
              <Button
                variant="secondary"
                onClick={() => {
                  storeToken('');
                  setToken('');
                  setSession(null);
                }}
              >
                Sign out
              </Button>
            </ToolbarItem>
          </ToolbarContent>
        </Toolbar>
      </MastheadContent>
    </Masthead>
  );
  const sidebar = (
    <PageSidebar>
      <PageSidebarBody>
        <Nav aria-label="Sections">
          <NavList>
            {PAGES.map((p) => (
              <NavItem key={p.path} itemId={p.path} isActive={p.path === path} to={`#/${p.path}`}>
                {p.title}
              </NavItem>
            ))}
          </NavList>
        </Nav>
      </PageSidebarBody>
    </PageSidebar>
  );
  return (
    <SessionContext.Provider value={session}>
      <Page masthead={masthead} sidebar={sidebar}>
        <PageSection>
          <Title headingLevel="h2">{page.title}</Title>
        </PageSection>
        <PageSection>{page.render()}</PageSection>
      </Page>
    </SessionContext.Provider>
  );
}

function SignIn({ error, onToken }: { error: string; onToken: (t: string) => void }) {
  const [value, setValue] = useState('');
  const id = useMemo(() => 'token-input', []);
  return (
    <Page>
      <PageSection>
        <Title headingLevel="h1">LimiQuantix storage</Title>
        <p>Sign in with an API token (`lqctl token create NAME`; with --dev, the token in lq-data/lqctl.toml).</p>
        {error && <Alert variant="danger" isInline title={error} />}
        <Form
          onSubmit={(e) => {
            e.preventDefault();
            onToken(value.trim());
          }}
        >
          <FormGroup label="API token" fieldId={id}>
            <TextInput id={id} type="password" value={value} onChange={(_e, v) => setValue(v)} autoComplete="off" />
          </FormGroup>
          <Button type="submit" isDisabled={!value.trim()}>
            Sign in
          </Button>
        </Form>
      </PageSection>
    </Page>
  );
}
