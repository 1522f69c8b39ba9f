import { Layout, type PageFrame } from '../views.tsx';

/** The parts of an OpenAPI 3 document this page shows. */
interface OpenApiOperation {
  summary?: string;
  description?: string;
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: unknown }>;
  requestBody?: { content?: Record<string, { schema?: unknown }> };
  responses?: Record<string, { description?: string; content?: Record<string, { schema?: unknown }> }>;
}
export interface OpenApiDocument {
  info: { title: string; version: string; description?: string };
  paths?: Record<string, Record<string, OpenApiOperation>>;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/**
 * The admin API's reference, rendered on the appliance from its OpenAPI document (@fastify/swagger,
 * generated from the route schemas): every operation with its parameters, body and answers, schemas
 * as JSON. No viewer from elsewhere: the page is plain HTML under the console's CSP. The document
 * itself is at /api/v1/openapi.json for tools.
 */
export function ApiDocsPage({ frame, document }: { frame: PageFrame; document: OpenApiDocument }) {
  const operations = Object.entries(document.paths ?? {}).flatMap(([path, item]) =>
    METHODS.filter((method) => item[method] !== undefined).map((method) => ({ path, method, operation: item[method]! })),
  );
  return (
    <Layout frame={frame} title="Admin API">
      <h1>{`${document.info.title} ${document.info.version}`}</h1>
      <p>{document.info.description}</p>
      <p>
        The document for tools: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (with an API token). {operations.length} operations.
      </p>
      {operations.map(({ path, method, operation }) => (
        <details key={`${method} ${path}`} class="operation">
          <summary>
            <code>{`${method.toUpperCase()} ${path}`}</code> {operation.summary ?? operation.description ?? ''}
          </summary>
          {(operation.parameters ?? []).length > 0 && (
            <>
              <h3>Parameters</h3>
              <ul>
                {operation.parameters!.map((parameter) => (
                  <li key={`${parameter.in}:${parameter.name}`}>
                    <code>{parameter.name}</code> ({parameter.in}
                    {parameter.required ? ', required' : ''}) <code>{JSON.stringify(parameter.schema)}</code>
                  </li>
                ))}
              </ul>
            </>
          )}
          {operation.requestBody?.content && (
            <>
              <h3>Body</h3>
              {Object.entries(operation.requestBody.content).map(([type, content]) => (
                <pre key={type}>
                  <code>{`${type}\n${JSON.stringify(content.schema, null, 2)}`}</code>
                </pre>
              ))}
            </>
          )}
          <h3>Answers</h3>
          {Object.entries(operation.responses ?? {}).map(([status, answer]) => (
            <div key={status}>
              <strong>{status}</strong> {answer.description}
              {Object.entries(answer.content ?? {}).map(([type, content]) => (
                <pre key={type}>
                  <code>{`${type}\n${JSON.stringify(content.schema, null, 2)}`}</code>
                </pre>
              ))}
            </div>
          ))}
        </details>
      ))}
    </Layout>
  );
}
